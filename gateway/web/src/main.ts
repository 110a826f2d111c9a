// Parley's web client: signs in (dev tokens), then runs the app. The token stays in
// localStorage, so a reload keeps the user signed in.

import { Api, devToken } from "./api";
import { App } from "./app";
import { $, input } from "./dom";

const TOKEN = "parley.token";
const USER = "parley.user";

let app: App | null = null;

function signOut(): void {
  app?.stop();
  app = null;
  localStorage.removeItem(TOKEN);
  localStorage.removeItem(USER);
  location.reload();
}

function run(token: string, user: string): void {
  $("signin").hidden = true;
  app = new App(new Api(token), user, signOut);
  void app.start();
}

function main(): void {
  const token = localStorage.getItem(TOKEN);
  const user = localStorage.getItem(USER);
  if (token && user) return run(token, user);
  $("signin").hidden = false;
  $("signin").onsubmit = async (ev) => {
    ev.preventDefault();
    const name = input("signin-name").value.trim();
    try {
      const t = await devToken(name);
      localStorage.setItem(TOKEN, t);
      localStorage.setItem(USER, name);
      run(t, name);
    } catch (e) {
      $("signin-error").textContent =
        e instanceof Error ? `${e.message} (is the gateway running with --dev-auth?)` : String(e);
    }
  };
}

main();

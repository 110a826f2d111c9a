// The web client in a real browser: Debian's headless Chromium, driven by playwright-core,
// against `parley dev` on the real Kafka broker (scripts/kafka.sh start), with attachments
// in the real S3 store (scripts/s3.sh start).
//
//   PARLEY_BIN=…/debug/parley PARLEY_TEST_KAFKA=127.0.0.1:9092 node --test tests/
//
// Screenshots of the main states go to test-results/ (not committed).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { crc32, deflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const BIN = process.env.PARLEY_BIN;
const KAFKA = process.env.PARLEY_TEST_KAFKA ?? "127.0.0.1:9092";
const S3 = process.env.PARLEY_TEST_S3_ENDPOINT ?? "http://127.0.0.1:8333";
const CHROMIUM = process.env.PARLEY_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = new URL("../test-results/", import.meta.url).pathname;
const WAIT = 30_000;

let browser;
let parley;
let base;
const dir = mkdtempSync(join(tmpdir(), "parley-web-"));
const prefix = `t-web-${Date.now().toString(36)}.`;
let port;
let runs = 0;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** `parley dev` on Kafka, on this test file's topics, data dir and port. */
async function startParley() {
  const log = join(dir, `parley-${runs++}.log`);
  const child = spawn(
    BIN,
    ["dev", "--dev-auth", "--http", `127.0.0.1:${port}`, "--data-dir", join(dir, "projector")],
    {
      env: {
        ...process.env,
        PARLEY_LOG: `kafka://${KAFKA}`,
        PARLEY_TOPIC_PREFIX: prefix,
        // One secret for every run: the pages' tokens outlive a restart.
        PARLEY_JWT_SECRET: "browser-tests-secret-of-at-least-32-bytes",
        PARLEY_LOG_LEVEL: "warn",
        PARLEY_RATE_SENDS: "0",
        PARLEY_RATE_READS: "0",
        PARLEY_ATTACHMENTS: "s3://parley-attachments",
        PARLEY_S3_ENDPOINT: S3,
        PARLEY_S3_ACCESS_KEY: process.env.PARLEY_TEST_S3_ACCESS_KEY ?? "parley",
        PARLEY_S3_SECRET_KEY: process.env.PARLEY_TEST_S3_SECRET_KEY ?? "parley-secret-key",
      },
      stdio: ["ignore", "ignore", openSync(log, "w")],
    },
  );
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) return child;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`parley dev exited: ${readFileSync(log, "utf8")}`);
    if (Date.now() > deadline) throw new Error(`parley dev not ready: ${readFileSync(log, "utf8")}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function stopParley(child) {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const killed = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await gone;
  clearTimeout(killed);
}

before(async () => {
  assert.ok(BIN, "PARLEY_BIN: the parley binary to test");
  mkdirSync(SHOTS, { recursive: true });
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  parley = await startParley();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});

after(async () => {
  await browser?.close();
  if (parley) await stopParley(parley);
});

/** A page signed in as `user`, in a context of its own (its own storage). */
async function signedIn(user, setup) {
  const context = await browser.newContext();
  if (setup) await setup(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(base + "/");
  await page.fill("#signin-name", user);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#app:not([hidden])");
  return page;
}

async function startChat(page, members) {
  await page.fill("#new-members", members);
  await page.click("#new-chat button[type=submit]");
  await page.waitForSelector("#chat:not([hidden])");
}

async function open(page, name) {
  const item = page.locator("#conversations li", { hasText: name });
  await item.first().waitFor();
  await item.first().click();
  await page.waitForSelector("#chat:not([hidden])");
}

async function send(page, text) {
  await page.fill("#composer-text", text);
  await page.press("#composer-text", "Enter");
}

async function bodies(page) {
  return page.locator("#messages li:not(.pending) .body").allTextContents();
}

function expectBody(page, text) {
  return page.locator("#messages li .body", { hasText: text }).first().waitFor();
}

test("two pages as two users chat, with ticks and typing", async () => {
  const amy = await signedIn("amy");
  const bob = await signedIn("bob");
  await amy.screenshot({ path: SHOTS + "signed-in.png" });
  await startChat(amy, "bob");
  await send(amy, "hello bob");
  // Sent: the log has it.
  await amy.locator('#messages li.mine .tick[data-tick="sent"], #messages li.mine .tick[data-tick="delivered"]').first().waitFor();
  // Bob's page receives it (and says so: delivered), then reads it.
  await open(bob, "amy");
  await expectBody(bob, "hello bob");
  await amy.locator('#messages li.mine .tick[data-tick="read"]').first().waitFor();
  await send(bob, "hi amy");
  await expectBody(amy, "hi amy");
  // Typing shows on the other page.
  await bob.type("#composer-text", "typing something", { delay: 20 });
  await amy.locator("#typing", { hasText: "bob is typing" }).waitFor();
  await amy.screenshot({ path: SHOTS + "chat.png" });
  // Presence: bob is online in amy's list.
  await amy.locator("#conversations li .dot.online").first().waitFor();
  await amy.context().close();
  await bob.context().close();
});

test("a reload keeps history and order", async () => {
  const cat = await signedIn("cat");
  await startChat(cat, "dan");
  const sent = ["one", "two", "three", "four", "five"];
  for (const s of sent) await send(cat, s);
  await cat.locator('#messages li.mine .tick[data-tick="sent"]').nth(sent.length - 1).waitFor();
  await cat.reload();
  await cat.waitForSelector("#app:not([hidden])");
  await open(cat, "dan");
  await expectBody(cat, "five");
  assert.deepEqual(await bodies(cat), sent);
  await cat.context().close();
});

test("stopping and restarting Parley mid-conversation loses nothing", async () => {
  const eve = await signedIn("eve");
  const fay = await signedIn("fay");
  await startChat(eve, "fay");
  await send(eve, "before the restart");
  await open(fay, "eve");
  await expectBody(fay, "before the restart");

  await stopParley(parley);
  await eve.locator("#banner:not([hidden])").waitFor();
  await eve.screenshot({ path: SHOTS + "offline.png" });
  // Written while Parley is down: sent once it is back.
  await send(eve, "while it was down");
  parley = await startParley();
  await eve.locator("#banner[hidden]").waitFor({ state: "attached" });
  await send(eve, "after the restart");
  await expectBody(fay, "after the restart");
  await expectBody(fay, "while it was down");
  const want = ["before the restart", "while it was down", "after the restart"];
  for (const page of [eve, fay]) {
    await page.locator("#messages li:not(.pending) .body", { hasText: "while it was down" }).waitFor();
    assert.deepEqual(await bodies(page), want);
  }
  await eve.context().close();
  await fay.context().close();
});

test("with the WebSocket blocked, the page long-polls and still chats", async () => {
  const blocked = (context) => context.routeWebSocket(/\/v1\/ws/, (ws) => ws.close());
  const gus = await signedIn("gus", blocked);
  const hal = await signedIn("hal");
  await gus.locator("#transport", { hasText: "long-poll" }).waitFor();
  await startChat(gus, "hal");
  await send(gus, "over long-poll");
  await open(hal, "gus");
  await expectBody(hal, "over long-poll");
  await send(hal, "and back");
  await expectBody(gus, "and back");
  await gus.screenshot({ path: SHOTS + "long-poll.png" });
  await gus.context().close();
  await hal.context().close();
});

/** The message item whose body says `text`. */
function item(page, text) {
  return page.locator("#messages li", { has: page.locator(".body", { hasText: text }) }).first();
}

test("edit, delete for everyone, react and reply: live, after a reload, and after being offline", async () => {
  const ivy = await signedIn("ivy");
  // jon's WebSockets pass through here, so that the test can cut them (offline).
  let offline = false;
  const sockets = [];
  const jon = await signedIn("jon", (context) =>
    context.routeWebSocket(/\/v1\/ws/, (ws) => {
      if (offline) return ws.close();
      ws.connectToServer();
      sockets.push(ws);
    }),
  );
  await startChat(ivy, "jon");
  await send(ivy, "helo");
  await open(jon, "ivy");
  await expectBody(jon, "helo");

  // An edit: inline on ivy's page, marked on both.
  await item(ivy, "helo").locator(".act-edit").click();
  await ivy.fill("#messages .edit-input", "hello");
  await ivy.press("#messages .edit-input", "Enter");
  for (const [name, page] of [["ivy", ivy], ["jon", jon]]) {
    // Which page missed it, and what it showed instead, if one does.
    await item(page, "hello")
      .locator(".edited")
      .waitFor()
      .catch(async (e) => {
        const shown = await page.locator("#messages").innerText().catch(() => "?");
        throw new Error(`${name}'s page never marked the edit (it shows: ${shown}): ${e.message}`);
      });
  }
  // A reaction: counted on both pages, jon's own highlighted on his.
  await item(jon, "hello").locator('.act-react[data-emoji="👍"]').click();
  await item(ivy, "hello").locator('.chip[data-emoji="👍"]', { hasText: "1" }).waitFor();
  await item(jon, "hello").locator('.chip.mine[data-emoji="👍"]').waitFor();
  // A reply, quoting the message above it.
  await item(jon, "hello").locator(".act-reply").click();
  await jon.locator("#replying:not([hidden])", { hasText: "hello" }).waitFor();
  await send(jon, "hi ivy");
  await item(ivy, "hi ivy").locator(".quote", { hasText: "hello" }).waitFor();
  // A deletion for everyone (two clicks: the second confirms).
  await send(ivy, "oops, wrong chat");
  await expectBody(jon, "oops, wrong chat");
  await item(ivy, "oops, wrong chat").locator(".act-delete").click();
  await ivy.locator("#messages .act-delete.confirm").click();
  for (const page of [ivy, jon]) {
    await page.locator("#messages li.deleted .body", { hasText: "message deleted" }).waitFor();
    assert.equal(await page.locator("#messages .body", { hasText: "oops, wrong chat" }).count(), 0);
  }
  await jon.screenshot({ path: SHOTS + "changes.png" });

  // After a reload: the same, from history.
  await jon.reload();
  await jon.waitForSelector("#app:not([hidden])");
  await open(jon, "ivy");
  await item(jon, "hello").locator(".edited").waitFor();
  await item(jon, "hello").locator('.chip.mine[data-emoji="👍"]', { hasText: "1" }).waitFor();
  await item(jon, "hi ivy").locator(".quote", { hasText: "hello" }).waitFor();
  await jon.locator("#messages li.deleted").waitFor();

  // While jon's page is offline, ivy changes what it holds; back online, it catches up.
  offline = true;
  for (const ws of sockets.splice(0)) await ws.close();
  await jon.locator("#banner:not([hidden])").waitFor();
  await item(ivy, "hello").locator(".act-edit").click();
  await ivy.fill("#messages .edit-input", "hello again");
  await ivy.press("#messages .edit-input", "Enter");
  await item(ivy, "hello again").locator(".edited").waitFor();
  await item(ivy, "hi ivy").locator('.act-react[data-emoji="🎉"]').click();
  await item(ivy, "hi ivy").locator('.chip[data-emoji="🎉"]').waitFor();
  offline = false;
  await jon.locator("#banner[hidden]").waitFor({ state: "attached" });
  await item(jon, "hello again").locator(".edited").waitFor();
  await item(jon, "hi ivy").locator('.chip[data-emoji="🎉"]', { hasText: "1" }).waitFor();
  // The quote follows the quoted message's current text.
  await item(jon, "hi ivy").locator(".quote", { hasText: "hello again" }).waitFor();
  await ivy.context().close();
  await jon.context().close();
});

test("mentions are counted in the list, and typing at a person's pace meets no limit", async () => {
  const kim = await signedIn("kim");
  const lou = await signedIn("lou");
  await startChat(kim, "lou");
  await send(kim, "@lou are you there?");
  await lou.locator("#conversations li", { hasText: "kim" }).locator(".mentions", { hasText: "@1" }).waitFor();
  await open(lou, "kim");
  await lou.locator("#conversations li .mentions").waitFor({ state: "detached" });
  // A short exchange typed at an ordinary pace: no error shows (the page paces its
  // typing frames below the gateway's limit).
  for (let i = 0; i < 6; i++) {
    await lou.type("#composer-text", `reply number ${i}`, { delay: 15 });
    await lou.press("#composer-text", "Enter");
  }
  await expectBody(kim, "reply number 5");
  assert.equal((await lou.locator("#error").textContent()) ?? "", "", "no error on lou's page");
  await kim.context().close();
  await lou.context().close();
});

/** A PNG of `w`×`h` pixels (RGB, a gradient). */
function png(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(w, 0);
  header.writeUInt32BE(h, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + 3 * w);
    for (let x = 0; x < w; x++) row.set([x % 256, y % 256, 120], 1 + 3 * x);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

async function downloaded(page, selector) {
  const [download] = await Promise.all([page.waitForEvent("download"), page.click(selector)]);
  return readFileSync(await download.path());
}

test("files: a PNG and a PDF uploaded on one page, seen inline and downloaded on the other, refused to an outsider", async () => {
  const image = png(640, 320);
  const pdf = Buffer.concat([Buffer.from("%PDF-1.4\n% not an image\n"), Buffer.alloc(20_000, 7)]);
  const amy = await signedIn("fileamy");
  const ben = await signedIn("fileben");
  await startChat(amy, "fileben");
  await amy.setInputFiles("#composer-file", [
    { name: "sketch.png", mimeType: "image/png", buffer: image },
    { name: "notes.pdf", mimeType: "application/pdf", buffer: pdf },
  ]);
  await amy.locator('#uploads li[data-state="uploaded"][data-name="sketch.png"]').waitFor();
  await amy.locator('#uploads li[data-state="uploaded"][data-name="notes.pdf"]').waitFor();
  await amy.locator("#uploads progress").first().waitFor();
  await send(amy, "two files");
  await amy.locator('#messages li.mine .tick[data-tick="sent"], #messages li.mine .tick[data-tick="delivered"], #messages li.mine .tick[data-tick="read"]').first().waitFor();
  // The other page: the image inline from its thumbnail, the PDF as a link.
  await open(ben, "fileamy");
  const thumb = ben.locator('#messages .attachment img.thumb[src^="blob:"]');
  await thumb.waitFor();
  const shown = await thumb.evaluate((img) => img.complete && img.naturalWidth);
  assert.equal(shown, 320, "the thumbnail is 320 px wide");
  await ben.locator("#messages a.file", { hasText: "notes.pdf" }).waitFor();
  await ben.screenshot({ path: SHOTS + "attachments.png" });
  assert.deepEqual(await downloaded(ben, '#messages a.file:has-text("notes.pdf")'), pdf, "the PDF's bytes");
  assert.deepEqual(await downloaded(ben, '#messages a.file:has-text("sketch.png")'), image, "the PNG's bytes");
  // The files are in the S3 store: the API redirects there.
  const id = await ben.getAttribute('#messages a.file:has-text("notes.pdf")', "data-attachment");
  const token = async (user) =>
    (await (await fetch(`${base}/v1/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: user }) })).json()).token;
  const benToken = await token("fileben");
  const r = await fetch(`${base}/v1/attachments/${id}`, { headers: { authorization: `Bearer ${benToken}` }, redirect: "manual" });
  assert.equal(r.status, 302);
  assert.ok(r.headers.get("location").startsWith(S3), r.headers.get("location"));
  // Someone outside the conversation.
  const outsider = await token("filecarl");
  for (const via of ["", "?via=gateway"]) {
    const no = await fetch(`${base}/v1/attachments/${id}${via}`, { headers: { authorization: `Bearer ${outsider}` }, redirect: "manual" });
    assert.equal(no.status, 403);
  }
  await amy.context().close();
  await ben.context().close();
});

async function search(page, q) {
  await page.fill("#search-text", q);
  await page.press("#search-text", "Enter");
  await page.waitForSelector("#search-results:not([hidden]) li");
  return page.locator("#search-results li[data-seq]");
}

test("search: a word sent a moment ago on the other page is found, opens the conversation at it; an outsider finds nothing", async () => {
  const kim = await signedIn("searchkim");
  const lou = await signedIn("searchlou");
  await startChat(kim, "searchlou");
  // The message is older than the newest page of history the page first loads.
  for (let i = 0; i < 10; i++) await send(kim, `filler ${i}`);
  await send(kim, "where did we say the Zeppelin launch date was? Ünïcödé too");
  for (let i = 10; i < 70; i++) await send(kim, `filler ${i}`);
  await expectBody(kim, "filler 69");
  // The other page searches at once, a word in another case and without its accents.
  const found = await search(lou, "zeppelin");
  assert.equal(await found.count(), 1);
  assert.equal(await found.locator("mark").first().textContent(), "Zeppelin");
  assert.equal(await (await search(lou, "unicode")).count(), 1);
  await lou.screenshot({ path: SHOTS + "search.png" });
  // A click opens the conversation, the message shown and marked, history paged
  // around it.
  await found.first().click();
  const marked = lou.locator("#messages li.found .body", { hasText: "Zeppelin" });
  await marked.waitFor();
  assert.ok(await marked.isVisible(), "the message found is in view");
  await lou.locator("#messages li .body", { hasText: "filler 9" }).waitFor();
  await lou.locator("#messages li .body", { hasText: "filler 69" }).waitFor();
  // Someone outside the conversation finds nothing.
  const max = await signedIn("searchmax");
  await max.fill("#search-text", "zeppelin");
  await max.press("#search-text", "Enter");
  await max.locator("#search-results li.none").waitFor();
  assert.equal(await max.locator("#search-results li[data-seq]").count(), 0);
  for (const p of [kim, lou, max]) await p.context().close();
});

test("disappearing messages: set in the header, a timer on what is sent after, gone when due", async () => {
  // kim's page runs on a clock the test moves forward.
  const kim = await signedIn("kim", (context) => context.clock.install());
  const lou = await signedIn("lou");
  await startChat(kim, "lou");
  await send(kim, "this one stays");
  await expectBody(kim, "this one stays");
  const saved = kim.waitForResponse((r) => r.request().method() === "PATCH" && r.ok());
  await kim.selectOption("#disappear", "30");
  await saved;
  await send(kim, "this one goes");
  await item(kim, "this one goes").locator(".timer").waitFor();
  assert.equal(await item(kim, "this one stays").locator(".timer").count(), 0);
  // The setting is the conversation's: lou's page shows it, and the timer.
  await open(lou, "kim");
  await item(lou, "this one goes").locator(".timer").waitFor();
  assert.equal(await lou.inputValue("#disappear"), "30");
  await lou.screenshot({ path: SHOTS + "disappearing.png" });
  // When its time comes, the page hides it; the other stays.
  await kim.clock.fastForward("00:31");
  await kim.locator("#messages li.deleted .body", { hasText: "message disappeared" }).waitFor();
  assert.equal(await kim.locator("#messages .body", { hasText: "this one goes" }).count(), 0);
  await expectBody(kim, "this one stays");
  await kim.context().close();
  await lou.context().close();
});

// Builds the web client into dist/: one bundled script, the page and its styles. The
// gateway embeds dist/ in its binary (gateway/build.rs) and serves it at /.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: "es2022",
  outfile: "dist/app.js",
  logLevel: "warning",
});
copyFileSync("index.html", "dist/index.html");
copyFileSync("style.css", "dist/style.css");
console.log("web client built into gateway/web/dist");

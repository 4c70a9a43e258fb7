// Serves the bench page beside the npm package's files and runs it in Debian Chromium
// (playwright-core). Env: PKG (the built package), BENCH (this directory). Prints JSON.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

import { launchChromium } from "../../e2e/lib/chromium.mjs";

const roots = [process.env.BENCH, process.env.PKG];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = http.createServer((req, res) => {
  const rel = path.normalize(new URL(req.url, "http://x").pathname).replace(/^\/+/, "") || "index.html";
  const file = roots.map((r) => path.join(r, rel)).find((f) => fs.existsSync(f) && fs.statSync(f).isFile());
  if (!file) return res.writeHead(404).end();
  res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await launchChromium("bench-chromium");
const context = browser.context;
try {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
  await page.waitForFunction(() => window.__bench, null, { timeout: 120_000 });
  const result = await page.evaluate(() => window.__bench);
  result.browser = context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent));
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}

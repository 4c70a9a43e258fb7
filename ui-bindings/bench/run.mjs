// Serves the bench page beside the npm package's files and runs it in Debian Chromium
// (playwright-core). Env: PKG (the built package), BENCH (this directory). Prints JSON.
import { createRequire } from "node:module";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const { chromium } = createRequire(import.meta.url)("playwright-core");
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
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "recached-bench-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
  await page.waitForFunction(() => window.__bench, null, { timeout: 120_000 });
  const result = await page.evaluate(() => window.__bench);
  result.browser = context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent));
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

// ui-bindings in Chromium against the edge hub: the npm package `recached`
// (scripts/build-npm.sh) bundled with the consumer page of ui-bindings/npm-consumer
// (main.ts, "tab" mode), served on a loopback HTTP server, two pages driven by
// playwright-core with Debian's Chromium. Each page uses its own BroadcastChannel name, so
// each holds its own WebSocket to the edge hub (Miniflare, /v1/ns/browser/ws) and what one
// page writes can only reach the other through the Durable Object.
// Checks: both pages go live; a write in page A shows in page B and the reverse; a backend
// write over the edge's HTTP command API shows in both; the object counts two sockets.
// Env: SITE (the bundled page: index.html, main.js, recached_bg.wasm), ARTIFACTS.
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { launchChromium } from "../../e2e/lib/chromium.mjs";
import { serveStatic } from "../../e2e/lib/static-server.mjs";

const require = createRequire(import.meta.url);
const { start } = require(path.join(path.dirname(fileURLToPath(import.meta.url)), "miniflare.cjs"));

const SITE = process.env.SITE;
const ARTIFACTS = process.env.ARTIFACTS ?? fs.mkdtempSync(path.join(os.tmpdir(), "recached-edge-browser-"));
fs.mkdirSync(ARTIFACTS, { recursive: true });

const server = await serveStatic(SITE);
const BASE = `http://127.0.0.1:${server.address().port}`;

// An open edge hub (no secret): the page connects without a token.
const edge = await start({});
const NS_HTTP = `${edge.url}/v1/ns/browser`;
const HUB_WS = `${edge.url.replace("http", "ws")}/v1/ns/browser/ws`;

const browser = await launchChromium("edge-chromium");
const context = browser.context;

let failures = 0;
function assert(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : ` — ${detail}`}`);
  if (!ok) failures++;
}
async function waitFor(what, cond, ms) {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
async function sockets() {
  const text = await (await fetch(`${NS_HTTP}/metrics`)).text();
  const m = text.match(/^recached_sync_sockets (\d+)/m);
  return m ? Number(m[1]) : NaN;
}
async function openPage(channel) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.log(`  [page error] ${m.text()}`); });
  page.on("pageerror", (e) => console.log(`  [page exception] ${e.message}`));
  const q = `mode=tab&channel=${channel}&hub=${encodeURIComponent(HUB_WS)}&pattern=${encodeURIComponent("edge:*")}`;
  await page.goto(`${BASE}/index.html?${q}`);
  await page.waitForFunction(() => window.recached !== undefined, null, { timeout: 15_000 });
  return page;
}
const status = (p) => p.evaluate(() => window.recached.status);
const get = (p, k) => p.evaluate((key) => window.recached.get(key), k);

try {
  const a = await openPage("edge-page-a");
  const b = await openPage("edge-page-b");
  await waitFor("both pages live", async () => (await status(a)) === "live" && (await status(b)) === "live", 20_000);
  assert("both pages are live on the edge hub", true);
  assert("the Durable Object counts two sockets", (await sockets()) === 2, `recached_sync_sockets = ${await sockets()}`);
  await a.evaluate(() => window.recached.set("edge:from-a", "hello"));
  const t1 = await waitFor("page B to see page A's write", async () => (await get(b, "edge:from-a")) === "hello", 5000);
  assert(`a write in page A reaches page B through the edge (${t1} ms)`, true);
  const n = await b.evaluate(() => window.recached.incr("edge:counter"));
  assert("page B's INCR is acknowledged", n === 1, String(n));
  await waitFor("page A to see page B's write", async () => (await get(a, "edge:counter")) === "1", 5000);
  assert("a write in page B reaches page A", true);
  await fetch(`${NS_HTTP}/`, { method: "POST", body: JSON.stringify(["SET", "edge:backend", "3"]) });
  await waitFor("the backend write in both pages", async () => (await get(a, "edge:backend")) === "3" && (await get(b, "edge:backend")) === "3", 5000);
  assert("a backend write (HTTP command API) shows in both pages", true);
  await a.screenshot({ path: path.join(ARTIFACTS, "edge-page-a.png") });
  await b.screenshot({ path: path.join(ARTIFACTS, "edge-page-b.png") });
} catch (e) {
  assert("browser test", false, e.stack ?? String(e));
}

await browser.close();
server.close();
for (const pid of edge.runtimePids) { try { process.kill(pid, "SIGKILL"); } catch (_) {} }
console.log(`screenshots: ${ARTIFACTS}`);
if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log("edge browser checks passed");
process.exit(0);

// Runs the npm consumer (main.ts bundled to $OUT/main.js beside the package's .wasm) in
// Debian Chromium through playwright-core, against the hub scripts/test.d/35-ui-npm.sh
// started, and asserts:
//   1. the API page: every check main.ts made passed;
//   2. issue 5 end-to-end test 3: two tabs of one context — one WebSocket between them
//      (the hub's recached_sync_sockets gauge and the pages' own socket events), both
//      update, and when the leader tab closes the other takes over (< 1 s) and keeps working;
//   3. issue 5 end-to-end test 5: no hub — two tabs share state over BroadcastChannel and a
//      third tab opened later hydrates from them.
// Screenshots go to $ARTIFACTS. Env: OUT, HUB_WS, HUB_HTTP, ARTIFACTS.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { launchChromium } from "../../e2e/lib/chromium.mjs";
import { serveStatic } from "../../e2e/lib/static-server.mjs";

const OUT = process.env.OUT;
const HUB_WS = process.env.HUB_WS;
const HUB_HTTP = process.env.HUB_HTTP;
const ARTIFACTS = process.env.ARTIFACTS ?? fs.mkdtempSync(path.join(os.tmpdir(), "recached-npm-artifacts-"));
fs.mkdirSync(ARTIFACTS, { recursive: true });

const server = await serveStatic(OUT);
const BASE = `http://127.0.0.1:${server.address().port}`;

const browser = await launchChromium("npm-chromium");
const context = browser.context;

let failures = 0;
function assert(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : ` — ${detail}`}`);
  if (!ok) failures++;
}

async function sockets() {
  const text = await (await fetch(`${HUB_HTTP}/metrics`)).text();
  const m = text.match(/^recached_sync_sockets (\d+)/m);
  return m ? Number(m[1]) : NaN;
}

async function waitFor(what, cond, ms) {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function openTab(query) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.log(`  [page error] ${m.text()}`); });
  page.on("pageerror", (e) => console.log(`  [page exception] ${e.message}`));
  page.sockets = 0;
  page.on("websocket", () => page.sockets++);
  await page.goto(`${BASE}/index.html?${query}`);
  await page.waitForFunction(() => window.recached !== undefined, null, { timeout: 10_000 });
  return page;
}

const tabState = (page) => page.evaluate(() => ({ role: window.recached.tabRole, status: window.recached.status }));
const tabGet = (page, key) => page.evaluate((k) => window.recached.get(k), key);

async function run(name, body) {
  try {
    await body();
  } catch (e) {
    assert(name, false, e.stack ?? String(e));
  }
}

// 1. The API page.
await run("api page", async () => {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`  [page exception] ${e.message}`));
  await page.goto(`${BASE}/index.html?hub=${encodeURIComponent(HUB_WS)}`);
  await page.waitForFunction(() => window.__results?.done, null, { timeout: 30_000 });
  const results = await page.evaluate(() => window.__results);
  for (const c of results.checks) assert(`api: ${c.name}`, c.ok, c.detail);
  assert("api: no exception", !results.error, results.error);
  assert("api: ran the hub checks", results.checks.some((c) => c.name === "follower write acked by the hub"));
  await page.screenshot({ path: path.join(ARTIFACTS, "npm-api.png") });
  await page.close();
});

// 2. End-to-end test 3: two tabs of one context with a hub.
await run("e2e 3", async () => {
  await waitFor("the API page's sockets to close", async () => (await sockets()) === 0, 5000);
  const q = `mode=tab&channel=e2e-hub&hub=${encodeURIComponent(HUB_WS)}&pattern=${encodeURIComponent("e2e:*")}`;
  const a = await openTab(q);
  const b = await openTab(q);
  await waitFor("both tabs live", async () => (await tabState(a)).status === "live" && (await tabState(b)).status === "live", 10_000);
  const [sa, sb] = [await tabState(a), await tabState(b)];
  assert("e2e 3: one leader, one follower", [sa.role, sb.role].sort().join() === "follower,leader", JSON.stringify([sa, sb]));
  assert("e2e 3: the hub counts one WebSocket", (await sockets()) === 1, `recached_sync_sockets = ${await sockets()}`);
  assert("e2e 3: one page opened a WebSocket", a.sockets + b.sockets === 1, `${a.sockets} + ${b.sockets}`);
  const [leader, follower] = sa.role === "leader" ? [a, b] : [b, a];
  await follower.evaluate(() => window.recached.set("e2e:from-follower", "1"));
  await leader.evaluate(() => window.recached.set("e2e:from-leader", "2"));
  await waitFor("both tabs updated", async () =>
    (await tabGet(a, "e2e:from-follower")) === "1" && (await tabGet(b, "e2e:from-leader")) === "2", 5000);
  assert("e2e 3: both tabs update", true);
  // A backend write (the HTTP command API) reaches both tabs through the one socket.
  await fetch(`${HUB_HTTP}/`, { method: "POST", body: JSON.stringify(["SET", "e2e:backend", "3"]) });
  await waitFor("the backend write in both tabs", async () =>
    (await tabGet(a, "e2e:backend")) === "3" && (await tabGet(b, "e2e:backend")) === "3", 5000);
  assert("e2e 3: a backend write shows in both tabs", true);
  await leader.screenshot({ path: path.join(ARTIFACTS, "e2e3-leader.png") });
  await follower.screenshot({ path: path.join(ARTIFACTS, "e2e3-follower.png") });
  await leader.close();
  const took = await waitFor("the follower to take over", async () => {
    const s = await tabState(follower);
    return s.role === "leader" && s.status === "live";
  }, 5000);
  assert(`e2e 3: takeover after the leader tab closed (${took} ms)`, took < 1000, `${took} ms`);
  await waitFor("the hub to count one socket", async () => (await sockets()) === 1, 2000);
  assert("e2e 3: still one WebSocket", (await sockets()) === 1);
  const n = await follower.evaluate(() => window.recached.incr("e2e:after"));
  assert("e2e 3: the new leader writes through the hub", n === 1, String(n));
  await follower.screenshot({ path: path.join(ARTIFACTS, "e2e3-takeover.png") });
  await follower.close();
});

// 3. End-to-end test 5: no hub — sharing and hydration.
await run("e2e 5", async () => {
  const q = "mode=tab&channel=e2e-local";
  const a = await openTab(q);
  const b = await openTab(q);
  await waitFor("roles", async () => [(await tabState(a)).role, (await tabState(b)).role].sort().join() === "follower,leader", 5000);
  await a.evaluate(() => window.recached.set("cart", "apple"));
  await b.evaluate(() => window.recached.hset("user", { name: "ann" }));
  await waitFor("both tabs share", async () =>
    (await tabGet(b, "cart")) === "apple" && (await a.evaluate(() => window.recached.hget("user", "name"))) === "ann", 5000);
  assert("e2e 5: two tabs share state over BroadcastChannel", true);
  assert("e2e 5: no WebSocket", a.sockets + b.sockets === 0);
  const c = await openTab(q);
  await waitFor("the third tab to hydrate", async () =>
    (await tabGet(c, "cart")) === "apple" && (await c.evaluate(() => window.recached.hget("user", "name"))) === "ann", 5000);
  assert("e2e 5: a tab opened later hydrates from the others", true);
  await c.evaluate(() => window.recached.set("cart", "pear"));
  await waitFor("the others to see the third tab's write", async () =>
    (await tabGet(a, "cart")) === "pear" && (await tabGet(b, "cart")) === "pear", 5000);
  assert("e2e 5: the third tab's write reaches the others", true);
  await c.screenshot({ path: path.join(ARTIFACTS, "e2e5-hydrated.png") });
  for (const p of [a, b, c]) await p.close();
});

await browser.close();
server.close();
console.log(`screenshots: ${ARTIFACTS}`);
if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log("all npm consumer checks passed");

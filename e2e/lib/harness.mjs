// Shared helpers of the Playwright end-to-end tests (e2e/tests/*.test.mjs), which
// scripts/test.d/50-e2e.sh runs with `node --test` after building the demo once and
// starting a dev-mode hub and a static server for the page. See e2e/README.md.
//
// Environment (set by 50-e2e.sh):
//   E2E_PAGE_URL       the built demo, e.g. http://127.0.0.1:41234/
//   E2E_HUB_WS         the shared dev-mode hub's sync URL, e.g. ws://127.0.0.1:41235
//   E2E_HUB_RESP_PORT  its RESP port (redis-cli, ioredis)
//   E2E_HUB_BIN        the `recached` binary, for tests that start (and restart) their own hub
//   E2E_HUB_SECRET     the shared hub's token secret
//   E2E_ARTIFACTS      where screenshots and page logs go (outside the clone)
//   E2E_PIDS           a file: every process a test starts appends its pid (the step's
//                      EXIT trap kills them even if node dies)
import { spawn, execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { chromium, CHROMIUM_ARGS, launchChromium } from './chromium.mjs';

// ESM ignores NODE_PATH; require honours it (scripts/env.sh points it at the pinned tools).
const require = createRequire(import.meta.url);
export { chromium };
const Redis = require('ioredis');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the e2e tests through scripts/test.d/50-e2e.sh`);
  return v;
}

/** What 50-e2e.sh set up. */
export const env = {
  get pageUrl() { return need('E2E_PAGE_URL'); },
  get hubWs() { return need('E2E_HUB_WS'); },
  get respPort() { return Number(need('E2E_HUB_RESP_PORT')); },
  get hubBin() { return need('E2E_HUB_BIN'); },
  get secret() { return need('E2E_HUB_SECRET'); },
  get artifacts() { return need('E2E_ARTIFACTS'); },
};

/** Wall-clock ms with sub-ms resolution (comparable with the page's, see clockOffset). */
export const nowMs = () => performance.timeOrigin + performance.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function recordPid(pid) {
  if (process.env.E2E_PIDS && pid) appendFileSync(process.env.E2E_PIDS, `${pid}\n`);
}

export { CHROMIUM_ARGS };

/**
 * A browser of its own (a persistent context in a fresh profile directory): two of them
 * share nothing (no BroadcastChannel, no storage); two pages of one share both.
 * Returns { context, close }. Register close with t.after.
 */
export async function launch(name = 'browser') {
  const browser = await launchChromium(`e2e-${name}`, { viewport: { width: 1200, height: 860 } });
  recordPid(browser.context.browser()?.process?.()?.pid);
  return browser;
}

/**
 * Opens the demo in `context` as `user` (default hub: the shared one). Waits until the page
 * is live unless `live: false`. Console messages and page errors go to
 * `$E2E_ARTIFACTS/<label>.console.log` (label defaults to the user).
 */
export async function openDemo(context, { user, hub = env.hubWs, query = '', live = true, label = user, timeout = 20_000 } = {}) {
  const page = await context.newPage();
  const log = [];
  const file = join(env.artifacts, `${label || 'page'}.console.log`);
  const flush = () => writeFileSync(file, log.join('\n') + '\n');
  page.on('console', (m) => { log.push(`[${m.type()}] ${m.text()}`); });
  page.on('pageerror', (e) => { log.push(`[pageerror] ${e.stack || e}`); flush(); });
  page.on('close', flush);
  const params = new URLSearchParams();
  if (hub) params.set('hub', hub);
  if (user) params.set('user', user);
  const url = `${env.pageUrl}?${params}${query ? `&${query}` : ''}`;
  await page.goto(url, { timeout });
  if (live) await waitStatus(page, 'live', timeout);
  return page;
}

/** Waits until the page's status pill says `status` (live, offline, connecting, resyncing). */
export async function waitStatus(page, status, timeout = 20_000) {
  await page.locator(`[data-testid="status"][data-status="${status}"]`).waitFor({ timeout });
}

/** Waits until `[data-testid=testid]` has exactly `text` (trimmed). */
export async function waitText(page, testid, text, timeout = 10_000) {
  await page.waitForFunction(
    ([id, want]) => document.querySelector(`[data-testid="${id}"]`)?.textContent.trim() === want,
    [testid, String(text)],
    { timeout },
  );
}

/** The trimmed text of `[data-testid=testid]` (null when absent). */
export async function textOf(page, testid) {
  const el = page.locator(`[data-testid="${testid}"]`);
  return (await el.count()) ? (await el.first().textContent()).trim() : null;
}

/** The keys the page's inspector lists, sorted. */
export async function visibleKeys(page) {
  return (await page.locator('[data-testid="inspect-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.key))).sort();
}

/** Saves a screenshot to the artifacts directory; returns its path. */
export async function screenshot(page, name) {
  const path = join(env.artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Runs `redis-cli -p port args…` once; resolves to its trimmed output. */
export async function redisCli(args, port = env.respPort) {
  const { stdout } = await promisify(execFile)('redis-cli', ['-p', String(port), ...args.map(String)], { timeout: 10_000 });
  return stdout.trim();
}

/**
 * One long-lived `redis-cli` process reading commands from stdin, one per line, so a
 * measurement times the command, not a process start. `send(args)` writes one command line
 * (arguments must not contain spaces or quotes); `close()` ends it.
 */
export function redisCliSession(port = env.respPort) {
  const proc = spawn('redis-cli', ['-p', String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  recordPid(proc.pid);
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => proc.once('exit', r));
  return {
    send(args) { proc.stdin.write(args.join(' ') + '\n'); },
    output: () => out,
    /** Ends the session (idempotent). */
    close() { if (proc.stdin.writable) proc.stdin.end(); return exited; },
  };
}

/** An ioredis client on `port` (a backend). Call .quit() when done. */
export function redis(port = env.respPort) {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 200 });
  // A hub a test stops on purpose refuses reconnects: commands still fail loudly; the
  // reconnect attempts themselves are not worth an "unhandled error" line.
  client.on('error', () => {});
  return client;
}

/** A free loopback TCP port. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Starts a dev-mode hub of the test's own on loopback (`ports` default: free ones, kept
 * across restart()) with `secret` (default: the shared hub's, so dev tokens survive a
 * restart). Resolves when it accepts connections. Returns
 * { respPort, wsPort, ws, stop(signal), restart(), output() }.
 */
export async function startHub({ respPort, wsPort, secret = env.secret, args = [] } = {}) {
  respPort = respPort || (await freePort());
  wsPort = wsPort || (await freePort());
  let proc = null;
  let out = '';
  const start = async () => {
    proc = spawn(env.hubBin, ['--dev', '--bind', '127.0.0.1', '--port', String(respPort), '--ws-port', String(wsPort),
      '--sync-secret', secret, '--loglevel', 'warning', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    recordPid(proc.pid);
    const ready = new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`hub not ready in 20 s:\n${out}`)), 20_000);
      const onData = (d) => {
        out += d;
        if (out.includes(`Ready to accept connections ws port=${wsPort}`)) { clearTimeout(timer); ok(); }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', (d) => { out += d; });
      proc.once('exit', (code) => { clearTimeout(timer); fail(new Error(`hub exited (${code}):\n${out}`)); });
    });
    await ready;
  };
  await start();
  const hub = {
    respPort,
    wsPort,
    ws: `ws://127.0.0.1:${wsPort}`,
    output: () => out,
    /** Stops the hub (SIGKILL by default: a crash) and waits for the exit. */
    async stop(signal = 'SIGKILL') {
      if (!proc || proc.exitCode !== null || proc.signalCode) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await exited;
    },
    /** Starts it again on the same ports (an empty hub: the demo hub keeps nothing). */
    async restart() {
      await hub.stop();
      await start();
    },
  };
  return hub;
}

/**
 * The page's clock minus this process's, in ms, from the round trip with the smallest
 * delay (the error is at most half of it, returned as `error`).
 */
export async function clockOffset(page, rounds = 50) {
  let best = { rtt: Infinity, offset: 0 };
  for (let i = 0; i < rounds; i++) {
    const t0 = nowMs();
    const tp = await page.evaluate(() => performance.timeOrigin + performance.now());
    const t1 = nowMs();
    if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: tp - (t0 + t1) / 2 };
    await sleep(5);
  }
  return { offset: best.offset, error: best.rtt / 2 };
}

/** The p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Polls `fn` (async ok) until it returns truthy or `timeout` ms pass; returns its value. */
export async function eventually(fn, { timeout = 10_000, every = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(every);
  }
}

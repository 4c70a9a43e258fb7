// e2e 1: a feature flag set with redis-cli shows in the page, and the SET→DOM latency
// over 100 writes (target p99 ≤ 16 ms on loopback). The numbers are printed as
// `E2E-LATENCY {json}` and recorded in docs/benchmarks.md ("Browser end-to-end").
//
// Timing: t0 is taken in this process just before the command line is written to a
// long-lived `redis-cli` (so a process start is not timed); t1 is taken in the page by a
// MutationObserver on the flag's row when its text becomes the new value. Both are wall
// clocks of one machine; their offset is measured (clockOffset) and removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clockOffset, env, launch, nowMs, openDemo, percentile, redisCli, redisCliSession, screenshot, waitText } from '../lib/harness.mjs';

const WRITES = 100;
const WARMUP = 10;

test('redis-cli SET of a feature flag shows in the page; SET→DOM latency p50/p99 over 100 writes', { timeout: 120_000 }, async (t) => {
  const browser = await launch('flags');
  t.after(() => browser.close());
  // Arrival time of every WebSocket message, taken before the app handles it (this
  // listener is registered before the app sets onmessage): splits the latency into the
  // hub + network part and the page part.
  await browser.context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__wsIn = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', () => window.__wsIn.push(performance.timeOrigin + performance.now()));
      }
    };
  });
  const page = await openDemo(browser.context, { user: 'flagwatcher' });

  // A backend flips flags with plain redis-cli; the page follows.
  await redisCli(['SET', 'flag:new-checkout', 'on']);
  await waitText(page, 'flag-value-new-checkout', 'on');
  await page.locator('[data-testid="express-checkout"]').waitFor({ timeout: 5_000 });
  await redisCli(['SET', 'flag:banner', 'Flash sale: everything must go']);
  await waitText(page, 'banner', 'Flash sale: everything must go');
  await redisCli(['SET', 'flag:dark-mode', 'on']);
  await page.locator('[data-testid="app"].dark').waitFor({ timeout: 5_000 });
  await screenshot(page, '01-flags-dark');
  await redisCli(['SET', 'flag:dark-mode', 'off']);
  await page.locator('[data-testid="app"]:not(.dark)').waitFor({ timeout: 5_000 });
  await redisCli(['DEL', 'flag:banner']);
  await page.locator('[data-testid="banner"]').waitFor({ state: 'detached', timeout: 5_000 });

  // Latency: one flag, 100 sequential SETs, each waited for in the DOM before the next.
  const key = 'flag:latency';
  await redisCli(['SET', key, 'start']);
  await waitText(page, 'flag-value-latency', 'start');
  await page.evaluate(() => {
    const row = document.querySelector('[data-testid="flag-latency"]');
    const value = row.querySelector('[data-testid="flag-value-latency"]');
    window.__seen = {};
    new MutationObserver(() => {
      const v = value.textContent.trim();
      if (!(v in window.__seen)) window.__seen[v] = performance.timeOrigin + performance.now();
    }).observe(row, { subtree: true, childList: true, characterData: true });
  });
  const clock = await clockOffset(page);
  const cli = redisCliSession();
  t.after(() => cli.close());
  const latencies = [];
  const hubPart = [];
  const pagePart = [];
  for (let i = 0; i < WARMUP + WRITES; i++) {
    const v = `v${i}`;
    const t0 = nowMs();
    cli.send(['SET', key, v]);
    const [t1, tws] = await page
      .waitForFunction((want) => window.__seen[want] && [window.__seen[want], window.__wsIn.filter((t) => t <= window.__seen[want]).pop()], v, { timeout: 5_000 })
      .then((h) => h.jsonValue());
    if (i >= WARMUP) {
      latencies.push(t1 - clock.offset - t0);
      hubPart.push(tws - clock.offset - t0);
      pagePart.push(t1 - tws);
    }
  }
  await cli.close();
  const r = (x) => Math.round(x * 100) / 100;
  const result = {
    writes: WRITES,
    p50_ms: r(percentile(latencies, 50)),
    p99_ms: r(percentile(latencies, 99)),
    max_ms: r(Math.max(...latencies)),
    min_ms: r(Math.min(...latencies)),
    // SET → the WebSocket message reaching the page (redis-cli, hub, fan-out, network).
    hub_p50_ms: r(percentile(hubPart, 50)),
    hub_p99_ms: r(percentile(hubPart, 99)),
    // The message → the DOM showing it (sync client, cache, signals, Leptos render).
    page_p50_ms: r(percentile(pagePart, 50)),
    page_p99_ms: r(percentile(pagePart, 99)),
    clock_offset_ms: r(clock.offset),
    clock_error_ms: r(clock.error),
    load_avg_1m: r((await import('node:os')).loadavg()[0]),
  };
  console.log(`E2E-LATENCY ${JSON.stringify(result)}`);
  writeFileSync(join(env.artifacts, '01-latency.json'), JSON.stringify({ ...result, samples: latencies.map(r) }, null, 2));
  assert.equal(await redisCli(['GET', key]), `v${WARMUP + WRITES - 1}`);
  // Loose bound so a loaded CI machine does not fail the build; the target (16 ms) is
  // reported, and checked when E2E_STRICT_LATENCY=1.
  const bound = process.env.E2E_STRICT_LATENCY === '1' ? 16 : 250;
  assert.ok(result.p99_ms <= bound, `p99 ${result.p99_ms} ms > ${bound} ms`);
  await redisCli(['DEL', key, 'flag:new-checkout']);
});

// e2e 5: no hub. Two tabs of one browser share their state over BroadcastChannel (a click
// in either shows in both), and a third tab opened later hydrates from them (it shows the
// count at once, with no server anywhere) and writes like the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, launch, openDemo, screenshot, waitText } from '../lib/harness.mjs';

test('no hub: tabs share state, a new tab hydrates', { timeout: 90_000 }, async (t) => {
  const browser = await launch('nohub');
  t.after(() => browser.close());
  // A hub URL nothing listens on: the page runs as a local cache.
  const hub = `ws://127.0.0.1:${await freePort()}`;
  const open = (label) => openDemo(browser.context, { user: 'nora', hub, live: false, label });
  const a = await open('05-tab-a');
  const b = await open('05-tab-b');
  for (let i = 0; i < 3; i++) await a.locator('[data-testid="counter-inc"]').click();
  await waitText(a, 'counter-value', 3);
  await waitText(b, 'counter-value', 3);
  await b.locator('[data-testid="counter-inc"]').click();
  await waitText(a, 'counter-value', 4);
  await waitText(b, 'counter-value', 4);

  const c = await open('05-tab-c');
  await waitText(c, 'counter-value', 4, 5_000);
  await c.locator('[data-testid="counter-inc"]').click();
  for (const p of [a, b, c]) await waitText(p, 'counter-value', 5);
  assert.equal(await c.locator('[data-testid="status"]').getAttribute('data-status'), await a.locator('[data-testid="status"]').getAttribute('data-status'));
  await screenshot(c, '05-hydrated');
});

// e2e 4: the hub restarts. The page shows offline, keeps working locally (a click while
// offline is applied at once and stays pending), reconnects by itself, and converges to
// the new hub's state: its pending write applied once, keys the old hub had gone, keys
// the new hub got shown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, launch, openDemo, redis, screenshot, sleep, startHub, textOf, visibleKeys, waitStatus, waitText } from '../lib/harness.mjs';

test('hub restart: offline, reconnect, converge', { timeout: 120_000 }, async (t) => {
  const hub = await startHub();
  t.after(() => hub.stop());
  const browser = await launch('restart');
  t.after(() => browser.close());
  let backend = redis(hub.respPort);
  t.after(() => backend.quit().catch(() => {}));
  const page = await openDemo(browser.context, { user: 'rita', hub: hub.ws });

  await backend.set('demo:counter', '10');
  await backend.set('flag:before-restart', 'on');
  await waitText(page, 'counter-value', 10);
  await waitText(page, 'flag-value-before-restart', 'on');

  // The hub dies (SIGKILL: no goodbye). The page says so.
  await backend.quit().catch(() => {});
  await hub.stop('SIGKILL');
  await waitStatus(page, 'offline', 10_000);
  await screenshot(page, '04-offline');

  // Still usable offline: the click applies at once and waits to be confirmed.
  await page.locator('[data-testid="counter-inc"]').click();
  await waitText(page, 'counter-value', 11, 2_000);
  await page.locator('[data-testid="pending"][data-pending="1"]').waitFor({ timeout: 2_000 });
  assert.equal(await textOf(page, 'pending'), '1 write pending');
  await sleep(1_000);

  // A new hub on the same ports: empty (in memory), same token secret. A backend writes
  // to it at once; the page reconnects with backoff on its own.
  await hub.restart();
  backend = redis(hub.respPort);
  await backend.set('flag:after-restart', 'yes');
  await waitStatus(page, 'live', 30_000);

  // Converged: nothing pending; the page holds exactly the hub's keys of its scope.
  await page.locator('[data-testid="pending"][data-pending="0"]').waitFor({ state: 'attached', timeout: 10_000 });
  await waitText(page, 'flag-value-after-restart', 'yes');
  await page.locator('[data-testid="flag-before-restart"]').waitFor({ state: 'detached', timeout: 10_000 });
  const hubCounter = await eventually(() => backend.get('demo:counter'), { what: 'the resent INCR on the new hub' });
  // The INCR made offline ran once on the new hub (1); the page shows the hub's value.
  assert.equal(hubCounter, '1');
  await waitText(page, 'counter-value', hubCounter);
  const scoped = async () => {
    const keys = [];
    for (const p of ['demo:*', 'presence:*', 'flag:*', 'cart:rita:*']) keys.push(...(await backend.keys(p)));
    return keys.sort();
  };
  await eventually(async () => JSON.stringify(await visibleKeys(page)) === JSON.stringify(await scoped()), {
    timeout: 10_000,
    what: 'the page to hold exactly the hub keys of its scope',
  }).catch(async (e) => {
    throw new Error(`${e.message}: page ${JSON.stringify(await visibleKeys(page))} hub ${JSON.stringify(await scoped())}`);
  });
  assert.equal(await textOf(page, 'status'), '● live');
  await screenshot(page, '04-reconnected');
});

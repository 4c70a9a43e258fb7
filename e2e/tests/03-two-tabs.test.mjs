// e2e 3: two tabs of one browser (one context) showing the same user share one cache:
// only one WebSocket is open between them (the leader tab's; the hub's
// recached_sync_sockets gauge and the pages' own socket events agree), both tabs update
// (a click in either, a backend write), and when the leader tab closes the other takes
// over — opens the socket and goes live — within a second, and keeps working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, launch, openDemo, redis, screenshot, startHub, waitStatus, waitText } from '../lib/harness.mjs';

test('two tabs: one WebSocket, both update, takeover when the leader closes', { timeout: 120_000 }, async (t) => {
  const hub = await startHub();
  t.after(() => hub.stop());
  const browser = await launch('tabs');
  t.after(() => browser.close());
  const backend = redis(hub.respPort);
  t.after(() => backend.quit().catch(() => {}));
  const metrics = hub.ws.replace(/^ws/, 'http') + '/metrics';
  const sockets = async () => Number((await (await fetch(metrics)).text()).match(/^recached_sync_sockets (\d+)/m)?.[1]);

  const watch = (page) => {
    page.sockets = 0;
    page.on('websocket', () => { page.sockets++; });
    return page;
  };
  // The socket listener must be on before the page connects: open, then navigate.
  const open = async (label) => watch(await openDemo(browser.context, { user: 'tess', hub: hub.ws, label }));
  const a = await open('03-tab-a');
  const b = await open('03-tab-b');
  await waitStatus(b, 'live');
  await eventually(async () => (await sockets()) === 1, { what: 'the hub to count one socket' });
  // The first tab opened the socket before its listener existed only if it led: count by
  // the hub, and by the tab that did not lead opening none.
  assert.equal(b.sockets, 0, 'the second tab follows: no WebSocket of its own');
  assert.equal(await sockets(), 1, 'one WebSocket between the two tabs');

  // Both tabs update: a click in the follower, a click in the leader, a backend write.
  await backend.set('demo:counter', '5');
  await waitText(a, 'counter-value', 5);
  await waitText(b, 'counter-value', 5);
  await b.locator('[data-testid="counter-inc"]').click();
  await waitText(a, 'counter-value', 6);
  await a.locator('[data-testid="counter-inc"]').click();
  await waitText(b, 'counter-value', 7);
  assert.equal(await eventually(async () => ((await backend.get('demo:counter')) === '7' ? '7' : null), { what: 'the hub to hold 7' }), '7');
  await backend.set('flag:tabs', 'on');
  await waitText(a, 'flag-value-tabs', 'on');
  await waitText(b, 'flag-value-tabs', 'on');
  await screenshot(a, '03-leader');
  await screenshot(b, '03-follower');

  // The leader tab closes: the other takes over within a second.
  const closed = Date.now();
  await a.close();
  await eventually(async () => b.sockets === 1, { timeout: 5_000, every: 5, what: 'the follower to open the socket' });
  await waitStatus(b, 'live', 5_000);
  const took = Date.now() - closed;
  console.log(`E2E-TAKEOVER ${JSON.stringify({ ms: took })}`);
  assert.ok(took < 1_000, `takeover took ${took} ms`);
  await eventually(async () => (await sockets()) === 1, { what: 'one socket after the takeover' });
  await b.locator('[data-testid="counter-inc"]').click();
  await waitText(b, 'counter-value', 8);
  await eventually(async () => ((await backend.get('demo:counter')) === '8' ? true : null), { what: 'the new leader to write through the hub' });
  await screenshot(b, '03-takeover');
});

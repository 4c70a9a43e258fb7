// e2e 2: two browser contexts (two browsers: nothing shared but the hub). A click in one
// updates the other; each sees the other online; each user's cart stays its own (scoped
// dev tokens), and a write to someone else's cart is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, launch, openDemo, redis, screenshot, textOf, visibleKeys, waitText } from '../lib/harness.mjs';

test('two browser contexts: a click in one updates the other', { timeout: 90_000 }, async (t) => {
  const [a, b] = await Promise.all([launch('ann'), launch('ben')]);
  t.after(() => Promise.all([a.close(), b.close()]));
  const backend = redis();
  t.after(() => backend.quit());
  const [pa, pb] = await Promise.all([openDemo(a.context, { user: 'ann' }), openDemo(b.context, { user: 'ben' })]);

  // Both show the hub's counter; a click in A reaches B (and the hub).
  const start = Number((await backend.get('demo:counter')) || 0);
  await Promise.all([waitText(pa, 'counter-value', start), waitText(pb, 'counter-value', start)]);
  await pa.locator('[data-testid="counter-inc"]').click();
  await waitText(pa, 'counter-value', start + 1, 2_000); // optimistic, at once
  await waitText(pb, 'counter-value', start + 1, 5_000);
  assert.equal(Number(await backend.get('demo:counter')), start + 1);
  // And back: three clicks in B.
  for (let i = 0; i < 3; i++) await pb.locator('[data-testid="counter-inc"]').click();
  await waitText(pa, 'counter-value', start + 4, 5_000);

  // Presence: each sees the other by its heartbeat key.
  await pa.locator('[data-testid="presence-ben"]').waitFor({ timeout: 10_000 });
  await pb.locator('[data-testid="presence-ann"]').waitFor({ timeout: 10_000 });

  // Carts are per user: A's cart is not even sent to B.
  await pa.locator('[data-testid="cart-add-coffee"]').click();
  await pa.locator('[data-testid="cart-add-apple"]').click();
  await pa.locator('[data-testid="cart-add-apple"]').click();
  await waitText(pa, 'cart-qty-apple', 2);
  await eventually(async () => (await backend.hget('cart:ann:items', 'apple')) === '2', { what: "ann's cart on the hub" });
  await waitText(pa, 'cart-total', '12.50');
  await waitText(pb, 'cart-total', '0.00');
  const keysA = await visibleKeys(pa);
  const keysB = await visibleKeys(pb);
  assert.ok(keysA.includes('cart:ann:items'), `A sees its cart: ${keysA}`);
  assert.ok(!keysB.some((k) => k.startsWith('cart:ann')), `B must not see A's cart: ${keysB}`);
  await pb.locator('[data-testid="cart-intrude"]').click();
  await pb.waitForFunction(() => /refused.*NOPERM/.test(document.querySelector('[data-testid="cart-intrude-result"]')?.textContent || ''), null, { timeout: 5_000 });
  assert.equal(await backend.exists('cart:mallory:items'), 0);

  await screenshot(pa, '02-ann');
  await screenshot(pb, '02-ben');
  assert.ok((await textOf(pb, 'cart-intrude-result')).includes('NOPERM'));

  // The README's picture (docs/screenshot.png is a copy of one): flags on, both online.
  await backend.set('flag:banner', 'Flash sale: everything must go');
  await backend.set('flag:new-checkout', 'on');
  await waitText(pa, 'banner', 'Flash sale: everything must go');
  await pa.locator('[data-testid="counter-inc"]').click();
  await pa.waitForTimeout(300); // the inspector's flash, mid-way
  await screenshot(pa, 'README-screenshot');
  await backend.del('flag:banner', 'flag:new-checkout');
});

// node-redis (npm `redis` 4.x) against the server under test.
// usage: node node_redis.js PORT AUTH_PORT PASSWORD   (AUTH_PORT runs with --requirepass)
// Runs every section, prints PASS/FAIL per section, exits 1 if any failed.
// node-redis 4 speaks RESP2 only; RESP3 is covered by redis-py (protocol=3).
'use strict';
const { createClient, commandOptions } = require('redis');
const assert = require('assert/strict');

const [PORT, AUTH_PORT] = process.argv.slice(2, 4).map(Number);
const PASSWORD = process.argv[4];
const opened = [];

async function client(opts = {}) {
  const { port = PORT, ...rest } = opts;
  const c = createClient({
    socket: { host: '127.0.0.1', port, connectTimeout: 10000, reconnectStrategy: (n) => (n > 20 ? false : 50) },
    ...rest,
  });
  c.on('error', () => {}); // reported through the failing command instead
  opened.push(c);
  await c.connect();
  return c;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Runs a command 200 ms from now (to wake a blocked client); its failure is logged, not fatal.
const later = (fn) => setTimeout(() => fn().catch((e) => console.log(`background command failed: ${e.message}`)), 200);
process.on('unhandledRejection', (e) => console.log(`unhandled rejection: ${e && e.message}`));
async function rejects(p, re) {
  try {
    await p;
  } catch (e) {
    if (re && !re.test(String(e.message))) throw new Error(`error ${e.message} does not match ${re}`);
    return e;
  }
  throw new Error('expected an error');
}
const buf = commandOptions({ returnBuffers: true });

const sections = {
  async strings(r) {
    assert.equal(await r.set('s:a', '1'), 'OK');
    assert.equal(await r.incr('s:a'), 2);
    assert.equal(await r.incrByFloat('s:f', 0.5), '0.5');
    assert.equal(await r.set('s:a', 'x', { NX: true }), null);
    assert.equal(await r.set('s:a', 'y', { GET: true }), '2');
    assert.deepEqual(await r.mGet(['s:a', 's:no']), ['y', null]);
    assert.equal(await r.setRange('s:a', 3, 'z'), 4);
    assert.equal(await r.get('s:a'), 'y\0\0z');
    assert.equal(await r.getEx('s:a', { PX: 100000 }), 'y\0\0z');
    assert.ok((await r.pTTL('s:a')) > 90000);
    await r.lPush('s:l', 'x');
    await rejects(r.get('s:l'), /^WRONGTYPE/);
  },

  async lists(r) {
    assert.equal(await r.rPush('l:a', ['a', 'b', 'c']), 3);
    assert.deepEqual(await r.lRange('l:a', 0, -1), ['a', 'b', 'c']);
    assert.equal(await r.lPush('l:a', 'z'), 4);
    assert.equal(await r.lLen('l:a'), 4);
    assert.equal(await r.lIndex('l:a', 0), 'z');
    assert.deepEqual(await r.lPopCount('l:a', 2), ['z', 'a']);
    assert.equal(await r.rPop('l:a'), 'c');
    assert.equal(await r.lMove('l:a', 'l:b', 'LEFT', 'LEFT'), 'b');
    assert.equal(await r.exists('l:a'), 0);
    assert.deepEqual(await r.lRange('l:b', 0, -1), ['b']);
  },

  async hashes(r) {
    assert.equal(await r.hSet('h:a', { f1: 'v1', f2: '2' }), 2);
    assert.deepEqual({ ...(await r.hGetAll('h:a')) }, { f1: 'v1', f2: '2' });
    assert.equal(await r.hIncrBy('h:a', 'f2', 3), 5);
    assert.equal(await r.hGet('h:a', 'f2'), '5');
    assert.deepEqual(await r.hmGet('h:a', ['f1', 'no']), ['v1', null]);
    assert.equal(await r.hDel('h:a', 'f1'), 1);
    assert.deepEqual((await r.hKeys('h:a')).sort(), ['f2']);
    const seen = {};
    await r.hSet('h:big', Object.fromEntries(Array.from({ length: 300 }, (_, i) => ['f' + i, String(i)])));
    for await (const { field, value } of r.hScanIterator('h:big', { COUNT: 30 })) seen[field] = value;
    assert.equal(Object.keys(seen).length, 300);
  },

  async sets(r) {
    assert.equal(await r.sAdd('st:a', ['a', 'b', 'c']), 3);
    await r.sAdd('st:b', ['b', 'x']);
    assert.deepEqual((await r.sMembers('st:a')).sort(), ['a', 'b', 'c']);
    assert.equal(await r.sIsMember('st:a', 'b'), true);
    assert.deepEqual(await r.sInter(['st:a', 'st:b']), ['b']);
    assert.equal(await r.sDiffStore('st:d', ['st:a', 'st:b']), 2);
    assert.equal(await r.sCard('st:d'), 2);
    assert.equal(await r.sRem('st:d', 'a'), 1);
    const seen = new Set();
    await r.sAdd('st:big', Array.from({ length: 300 }, (_, i) => String(i)));
    for await (const m of r.sScanIterator('st:big', { COUNT: 30 })) seen.add(m);
    assert.equal(seen.size, 300);
  },

  async sorted_sets(r) {
    assert.equal(await r.zAdd('z:a', [{ score: 1, value: 'a' }, { score: 2.5, value: 'b' }]), 2);
    assert.equal(await r.zScore('z:a', 'b'), 2.5);
    assert.deepEqual(await r.zRangeWithScores('z:a', 0, -1), [{ value: 'a', score: 1 }, { value: 'b', score: 2.5 }]);
    assert.deepEqual(await r.zRange('z:a', '+inf', '-inf', { BY: 'SCORE', REV: true }), ['b', 'a']);
    assert.equal(await r.zIncrBy('z:a', 2, 'a'), 3);
    assert.equal(await r.zRank('z:a', 'a'), 1);
    assert.equal(await r.zCard('z:a'), 2);
    assert.deepEqual(await r.zPopMax('z:a'), { value: 'a', score: 3 });
    assert.equal(await r.zRem('z:a', 'b'), 1);
    assert.equal(await r.exists('z:a'), 0);
  },

  async keys_and_expiry(r) {
    await r.set('k:a', 'v', { PX: 150 });
    await r.sAdd('k:h', 'm');
    assert.equal(await r.pExpire('k:h', 150), true);
    assert.ok((await r.pTTL('k:a')) <= 150);
    await r.set('k:b', 'v', { EX: 50 });
    assert.ok((await r.ttl('k:b')) >= 49);
    await sleep(400);
    assert.equal(await r.get('k:a'), null);
    assert.equal(await r.exists(['k:a', 'k:h']), 0);
    assert.equal(await r.persist('k:b'), true);
    assert.equal(await r.ttl('k:b'), -1);
    assert.equal(await r.expireAt('k:b', Math.floor(Date.now() / 1000) + 100), true);
    assert.ok((await r.ttl('k:b')) > 90);
    await r.mSet(Object.fromEntries(Array.from({ length: 300 }, (_, i) => ['k:scan:' + i, String(i)])));
    const seen = new Set();
    for await (const k of r.scanIterator({ MATCH: 'k:scan:*', COUNT: 30 })) seen.add(k);
    assert.equal(seen.size, 300);
    assert.equal((await r.keys('k:scan:2?')).length, 10);
    assert.equal(await r.type('k:b'), 'string');
    assert.equal(await r.del(['k:b', 'k:none']), 1);
  },

  async pipeline_10000(r) {
    const m = r.multi();
    for (let i = 0; i < 10000; i++) m.set('p:' + i, String(i));
    for (let i = 0; i < 10000; i++) m.get('p:' + i);
    const res = await m.execAsPipeline();
    assert.equal(res.length, 20000);
    for (let i = 0; i < 10000; i++) {
      assert.equal(res[i], 'OK');
      assert.equal(res[10000 + i], String(i));
    }
    // node-redis also pipelines commands issued in the same tick.
    const vals = await Promise.all(Array.from({ length: 10000 }, (_, i) => r.incr('p:' + i)));
    vals.forEach((v, i) => assert.equal(v, i + 1));
  },

  async transactions(r) {
    assert.deepEqual(await r.multi().set('t:a', '1').incr('t:a').get('t:a').exec(), ['OK', 2, '2']);
    const iso = await r.duplicate();
    iso.on('error', () => {});
    opened.push(iso);
    await iso.connect();
    await iso.watch('t:a');
    await r.set('t:a', '100');
    await rejects(iso.multi().set('t:a', '3').exec(), /WATCH|Watched/i);
    assert.equal(await r.get('t:a'), '100');
    await iso.watch('t:a');
    assert.deepEqual(await iso.multi().incr('t:a').exec(), [101]);
    const res = await r.multi().set('t:s', 'x').incr('t:s').get('t:s').exec().catch((e) => e);
    // node-redis rejects the whole EXEC when one reply is an error; the others ran.
    assert.ok(res instanceof Error, String(res));
    assert.equal(await r.get('t:s'), 'x');
  },

  async pubsub_patterns(r) {
    const sub = r.duplicate();
    sub.on('error', () => {});
    opened.push(sub);
    await sub.connect();
    const got = [];
    await sub.subscribe('news.tech', (msg, ch) => got.push(['message', ch, msg]));
    await sub.pSubscribe(['news.*', 'h?llo'], (msg, ch) => got.push(['pmessage', ch, msg]));
    assert.equal(await r.publish('news.tech', 'hi'), 2);
    assert.equal(await r.publish('hello', 'x\r\n\0y'), 1);
    for (let i = 0; i < 100 && got.length < 3; i++) await sleep(20);
    got.sort();
    assert.deepEqual(got, [
      ['message', 'news.tech', 'hi'],
      ['pmessage', 'hello', 'x\r\n\0y'],
      ['pmessage', 'news.tech', 'hi'],
    ]);
    assert.deepEqual(await r.pubSubChannels(), ['news.tech']);
    assert.deepEqual({ ...(await r.pubSubNumSub('news.tech')) }, { 'news.tech': 1 });
    assert.equal(await r.pubSubNumPat(), 2);
    await sub.pUnsubscribe('news.*');
    assert.equal(await r.publish('news.sport', 'x'), 0);
    // (node-redis 4 waits forever on an argument-less UNSUBSCRIBE, so name them.)
    await sub.unsubscribe('news.tech');
    await sub.pUnsubscribe('h?llo');
    assert.equal(await r.pubSubNumPat(), 0);
  },

  async blocking_pops(r) {
    const b = await client();
    let t0 = Date.now();
    assert.equal(await b.blPop(commandOptions({ isolated: true }), 'b:none', 0.5), null);
    const el = Date.now() - t0;
    assert.ok(el >= 400 && el < 2000, `BLPOP 0.5 s took ${el} ms`);
    later(() => r.rPush('b:l', 'v'));
    assert.deepEqual({ ...(await b.brPop(['b:none', 'b:l'], 5)) }, { key: 'b:l', element: 'v' });
    later(() => r.rPush('b:src', 'x'));
    assert.equal(await b.blMove('b:src', 'b:dst', 'RIGHT', 'LEFT', 5), 'x');
    t0 = Date.now();
    assert.deepEqual(await r.multi().blPop('b:none', 10).exec(), [null]);
    assert.ok(Date.now() - t0 < 1000);
    later(() => r.zAdd('b:z', { score: 3, value: 'm' }));
    assert.deepEqual({ ...(await b.bzPopMin('b:z', 5)) }, { key: 'b:z', value: 'm', score: 3 });
  },

  async auth() {
    const anon = await client({ port: AUTH_PORT });
    await rejects(anon.get('a'), /NOAUTH/);
    await rejects(client({ port: AUTH_PORT, password: 'wrong', socket: { host: '127.0.0.1', port: AUTH_PORT, reconnectStrategy: false } }), /WRONGPASS|invalid/);
    const good = await client({ port: AUTH_PORT, password: PASSWORD });
    assert.equal(await good.set('a', 'b'), 'OK');
    const user = await client({ port: AUTH_PORT, username: 'default', password: PASSWORD });
    assert.equal(await user.get('a'), 'b');
  },

  async reconnect_after_client_kill(r) {
    const v = await client({ name: 'victim' });
    let reconnects = 0;
    v.on('reconnecting', () => reconnects++);
    const id = await v.clientId();
    assert.equal(await v.clientGetName(), 'victim');
    assert.equal(await r.clientKill({ filter: 'ID', id }), 1);
    await sleep(300);
    assert.equal(await v.ping(), 'PONG');
    assert.ok(reconnects >= 1, 'no reconnect');
    assert.notEqual(await v.clientId(), id);
    assert.equal(await v.clientGetName(), 'victim');
  },

  async large_and_binary_values(r) {
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    assert.equal(await r.set('v:big', big), 'OK');
    assert.ok((await r.get(buf, 'v:big')).equals(big));
    const nasty = Buffer.from([13, 10, 0, 36, 53, 13, 10, 42, 49, 13, 10, 0, 255, 13, 10]);
    assert.equal(await r.set(nasty, nasty), 'OK');
    assert.ok((await r.get(buf, nasty)).equals(nasty));
    await r.sAdd('v:s', nasty);
    assert.ok((await r.sMembers(buf, 'v:s'))[0].equals(nasty));
    const vals = await Promise.all(Array.from({ length: 10 }, (_, i) => r.set('v:b' + i, big).then(() => r.get(buf, 'v:b' + i))));
    vals.forEach((v) => assert.ok(v.equals(big)));
  },

  async server_commands(r) {
    assert.match(await r.info('server'), /redis_version:/);
    assert.ok((await r.dbSize()) > 0);
    await r.select(3);
    assert.equal(await r.dbSize(), 0);
    await r.select(0);
    assert.equal(await r.flushAll('ASYNC'), 'OK');
    assert.equal(await r.dbSize(), 0);
  },
};

(async () => {
  const failed = [];
  const r = await client();
  await r.flushAll();
  for (const [name, fn] of Object.entries(sections)) {
    const t0 = Date.now();
    try {
      await fn(r);
      console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed.push(name);
      console.log(`FAIL ${name}\n${e && e.stack ? e.stack : e}`);
    }
  }
  const total = Object.keys(sections).length;
  console.log(`node-redis ${require('redis/package.json').version}: ${total - failed.length}/${total} sections passed`);
  if (failed.length) console.log('failed: ' + failed.join(', '));
  for (const c of opened) c.disconnect().catch(() => {});
  process.exit(failed.length ? 1 : 0);
})();
setTimeout(() => { console.log('FAIL: node-redis suite timed out'); process.exit(2); }, 110000).unref();

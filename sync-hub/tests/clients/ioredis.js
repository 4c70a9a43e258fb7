// ioredis against the server under test.
// usage: node ioredis.js PORT AUTH_PORT PASSWORD   (AUTH_PORT runs with --requirepass)
// Runs every section, prints PASS/FAIL per section, exits 1 if any failed.
'use strict';
const Redis = require('ioredis');
const assert = require('assert/strict');

const [PORT, AUTH_PORT] = process.argv.slice(2, 4).map(Number);
const PASSWORD = process.argv[4];
const opened = [];

function client(opts = {}) {
  const c = new Redis({
    host: '127.0.0.1',
    port: PORT,
    connectTimeout: 10000,
    commandTimeout: 15000,
    maxRetriesPerRequest: 3,
    lazyConnect: false,
    ...opts,
  });
  c.on('error', () => {}); // reported through the failing command instead
  opened.push(c);
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

const sections = {
  async strings(r) {
    assert.equal(await r.set('s:a', '1'), 'OK');
    assert.equal(await r.incr('s:a'), 2);
    assert.equal(await r.incrby('s:a', 40), 42);
    assert.equal(await r.incrbyfloat('s:f', 1.5), '1.5');
    assert.equal(await r.append('s:b', 'hello'), 5);
    assert.equal(await r.getrange('s:b', 1, 3), 'ell');
    assert.equal(await r.mset('s:m1', 'x', 's:m2', 'y'), 'OK');
    assert.deepEqual(await r.mget('s:m1', 's:m2', 's:no'), ['x', 'y', null]);
    assert.equal(await r.set('s:m1', 'z', 'NX'), null);
    assert.equal(await r.set('s:m1', 'z', 'XX', 'GET'), 'x');
    assert.equal(await r.getdel('s:m1'), 'z');
    assert.equal(await r.strlen('s:b'), 5);
    assert.equal(await r.type('s:a'), 'string');
    await rejects(r.incr('s:b'), /ERR value is not an integer or out of range/);
    await r.rpush('s:l', 'x');
    await rejects(r.get('s:l'), /^WRONGTYPE Operation against a key holding the wrong kind of value/);
  },

  async lists(r) {
    assert.equal(await r.rpush('l:a', 'a', 'b', 'c'), 3);
    assert.equal(await r.lpush('l:a', 'z'), 4);
    assert.deepEqual(await r.lrange('l:a', 0, -1), ['z', 'a', 'b', 'c']);
    assert.equal(await r.lindex('l:a', -1), 'c');
    assert.equal(await r.linsert('l:a', 'AFTER', 'a', 'ins'), 5);
    assert.equal(await r.lrem('l:a', 1, 'ins'), 1);
    assert.equal(await r.lpos('l:a', 'b'), 2);
    assert.equal(await r.lset('l:a', 0, 'Z'), 'OK');
    assert.equal(await r.lpop('l:a'), 'Z');
    assert.deepEqual(await r.rpop('l:a', 5), ['c', 'b', 'a']);
    assert.equal(await r.exists('l:a'), 0);
    await r.rpush('l:b', 1, 2, 3, 4);
    assert.equal(await r.ltrim('l:b', 1, -2), 'OK');
    assert.equal(await r.lmove('l:b', 'l:c', 'RIGHT', 'LEFT'), '3');
    assert.deepEqual(await r.lrange('l:b', 0, -1), ['2']);
    assert.equal(await r.llen('l:c'), 1);
  },

  async hashes(r) {
    assert.equal(await r.hset('h:a', { f1: 'v1', f2: '2' }), 2);
    assert.equal(await r.hget('h:a', 'f1'), 'v1');
    assert.deepEqual(await r.hgetall('h:a'), { f1: 'v1', f2: '2' });
    assert.equal(await r.hincrby('h:a', 'f2', 5), 7);
    assert.equal(await r.hincrbyfloat('h:a', 'fl', '2.5'), '2.5');
    assert.deepEqual(await r.hmget('h:a', 'f1', 'no'), ['v1', null]);
    assert.equal(await r.hdel('h:a', 'f1'), 1);
    assert.equal(await r.hlen('h:a'), 2);
    assert.equal(await r.hexists('h:a', 'f2'), 1);
    const fields = {};
    for (let i = 0; i < 500; i++) fields['f' + i] = String(i);
    await r.hset('h:big', fields);
    const seen = {};
    await new Promise((resolve, reject) => {
      r.hscanStream('h:big', { count: 40 })
        .on('data', (kv) => { for (let i = 0; i < kv.length; i += 2) seen[kv[i]] = kv[i + 1]; })
        .on('end', resolve)
        .on('error', reject);
    });
    assert.deepEqual(seen, fields);
  },

  async sets(r) {
    assert.equal(await r.sadd('st:a', 'a', 'b', 'c'), 3);
    await r.sadd('st:b', 'c', 'd');
    assert.deepEqual((await r.smembers('st:a')).sort(), ['a', 'b', 'c']);
    assert.equal(await r.sismember('st:a', 'a'), 1);
    assert.deepEqual(await r.smismember('st:a', 'a', 'x'), [1, 0]);
    assert.deepEqual(await r.sinter('st:a', 'st:b'), ['c']);
    assert.deepEqual((await r.sunion('st:a', 'st:b')).sort(), ['a', 'b', 'c', 'd']);
    assert.deepEqual((await r.sdiff('st:a', 'st:b')).sort(), ['a', 'b']);
    assert.equal(await r.sunionstore('st:u', 'st:a', 'st:b'), 4);
    assert.equal(await r.srem('st:u', 'a'), 1);
    assert.equal(await r.scard('st:u'), 3);
    const popped = await r.spop('st:u', 3);
    assert.deepEqual(popped.sort(), ['b', 'c', 'd']);
    assert.equal(await r.exists('st:u'), 0);
  },

  async sorted_sets(r) {
    assert.equal(await r.zadd('z:a', 1, 'a', 2, 'b', 3.5, 'c'), 3);
    assert.equal(await r.zscore('z:a', 'c'), '3.5');
    assert.deepEqual(await r.zrange('z:a', 0, -1, 'WITHSCORES'), ['a', '1', 'b', '2', 'c', '3.5']);
    assert.deepEqual(await r.zrangebyscore('z:a', '(1', '+inf', 'LIMIT', 0, 1), ['b']);
    assert.deepEqual(await r.zrange('z:a', '+inf', '-inf', 'BYSCORE', 'REV'), ['c', 'b', 'a']);
    assert.equal(await r.zincrby('z:a', 0.5, 'a'), '1.5');
    assert.equal(await r.zrank('z:a', 'c'), 2);
    assert.equal(await r.zcount('z:a', '-inf', 2), 2);
    assert.deepEqual(await r.zpopmin('z:a'), ['a', '1.5']);
    assert.equal(await r.zrem('z:a', 'b', 'c'), 2);
    assert.equal(await r.exists('z:a'), 0);
  },

  async keys_and_expiry(r) {
    await r.set('k:a', 'v', 'PX', 150);
    await r.set('k:b', 'v', 'EX', 100);
    assert.ok((await r.ttl('k:b')) > 98);
    assert.ok((await r.pttl('k:a')) <= 150);
    await r.sadd('k:s', 'x');
    assert.equal(await r.pexpire('k:s', 150), 1);
    assert.equal(await r.expire('k:none', 10), 0);
    await sleep(400);
    assert.equal(await r.get('k:a'), null);
    assert.equal(await r.exists('k:s'), 0);
    assert.equal(await r.persist('k:b'), 1);
    assert.equal(await r.ttl('k:b'), -1);
    assert.equal(await r.rename('k:b', 'k:c'), 'OK');
    assert.equal(await r.type('k:c'), 'string');
    const keys = [];
    for (let i = 0; i < 300; i++) keys.push('k:scan:' + i, i);
    await r.mset(...keys);
    const seen = new Set();
    await new Promise((resolve, reject) => {
      r.scanStream({ match: 'k:scan:*', count: 25 })
        .on('data', (ks) => ks.forEach((k) => seen.add(k)))
        .on('end', resolve)
        .on('error', reject);
    });
    assert.equal(seen.size, 300);
    assert.equal(await r.del('k:c', 'k:none'), 1);
    const db2 = client({ db: 2 });
    await db2.set('k:db2', 'x');
    assert.equal(await r.get('k:db2'), null);
    assert.equal(await db2.get('k:db2'), 'x');
  },

  async pipeline_10000(r) {
    const p = r.pipeline();
    for (let i = 0; i < 10000; i++) p.set('p:' + i, i);
    for (let i = 0; i < 10000; i++) p.incr('p:' + i);
    const res = await p.exec();
    assert.equal(res.length, 20000);
    for (let i = 0; i < 10000; i++) {
      assert.deepEqual(res[i], [null, 'OK']);
      assert.deepEqual(res[10000 + i], [null, i + 1]);
    }
    // Auto-pipelining: many commands in flight without waiting.
    const a = client({ enableAutoPipelining: true });
    const vals = await Promise.all(Array.from({ length: 10000 }, (_, i) => a.get('p:' + i)));
    vals.forEach((v, i) => assert.equal(v, String(i + 1)));
    const p2 = r.pipeline().set('p:x', 'a').incr('p:x').get('p:x');
    const res2 = await p2.exec();
    assert.equal(res2[0][1], 'OK');
    assert.match(String(res2[1][0]), /not an integer/);
    assert.equal(res2[2][1], 'a');
  },

  async transactions(r) {
    const res = await r.multi().set('t:a', 1).incr('t:a').get('t:a').exec();
    assert.deepEqual(res, [[null, 'OK'], [null, 2], [null, '2']]);
    const other = client();
    await r.watch('t:a');
    await other.set('t:a', 100);
    const aborted = await r.multi().set('t:a', 3).exec();
    assert.equal(aborted, null);
    assert.equal(await r.get('t:a'), '100');
    await r.watch('t:a');
    const ok = await r.multi().incr('t:a').exec();
    assert.deepEqual(ok, [[null, 101]]);
    await r.watch('t:a');
    assert.equal(await r.unwatch(), 'OK');
    await other.set('t:a', 5);
    assert.deepEqual(await r.multi().get('t:a').exec(), [[null, '5']]);
    await rejects(r.multi().set('t:x').exec(), /EXECABORT|wrong number of arguments/);
  },

  async pubsub_patterns(r) {
    const sub = client();
    const got = [];
    sub.on('message', (ch, msg) => got.push(['message', null, ch, msg]));
    sub.on('pmessage', (pat, ch, msg) => got.push(['pmessage', pat, ch, msg]));
    assert.equal(await sub.subscribe('news.tech'), 1);
    assert.equal(await sub.psubscribe('news.*', 'h?llo'), 3);
    await rejects(sub.get('x'), /only \(P\|S\)SUBSCRIBE|Connection in subscriber mode/);
    assert.equal(await r.publish('news.tech', 'hi'), 2);
    assert.equal(await r.publish('hello', 'bin\r\n\0'), 1);
    assert.equal(await r.publish('other', 'x'), 0);
    for (let i = 0; i < 100 && got.length < 3; i++) await sleep(20);
    got.sort();
    assert.deepEqual(got, [
      ['message', null, 'news.tech', 'hi'],
      ['pmessage', 'h?llo', 'hello', 'bin\r\n\0'],
      ['pmessage', 'news.*', 'news.tech', 'hi'],
    ]);
    assert.deepEqual(await r.pubsub('NUMSUB', 'news.tech'), ['news.tech', 1]);
    assert.equal(await r.pubsub('NUMPAT'), 2);
    await sub.punsubscribe('news.*');
    assert.equal(await r.publish('news.x', 'y'), 0);
    // (ioredis mishandles argument-less UNSUBSCRIBE replies, so name them.)
    assert.equal(await sub.unsubscribe('news.tech'), 1);
    assert.equal(await sub.punsubscribe('h?llo'), 0);
    assert.equal(await sub.get('x'), null); // back to normal mode
  },

  async blocking_pops(r) {
    let t0 = Date.now();
    assert.equal(await r.blpop('b:none', 0.5), null);
    const el = Date.now() - t0;
    assert.ok(el >= 400 && el < 2000, `BLPOP 0.5 s timeout took ${el} ms`);
    const other = client();
    later(() => other.rpush('b:l', 'v'));
    t0 = Date.now();
    assert.deepEqual(await r.brpop('b:none', 'b:l', 5), ['b:l', 'v']);
    assert.ok(Date.now() - t0 < 3000);
    later(() => other.lpush('b:src', 'x'));
    assert.equal(await r.blmove('b:src', 'b:dst', 'LEFT', 'RIGHT', 5), 'x');
    later(() => other.rpush('b:mp', 'a', 'b'));
    assert.deepEqual(await r.blmpop(5, 1, 'b:mp', 'RIGHT', 'COUNT', 2), ['b:mp', ['b', 'a']]);
    // FIFO among waiters on one key.
    const w1 = client(), w2 = client();
    const p1 = w1.blpop('b:fifo', 5);
    await sleep(150);
    const p2 = w2.blpop('b:fifo', 5);
    await sleep(150);
    await other.rpush('b:fifo', 'first', 'second');
    assert.deepEqual(await p1, ['b:fifo', 'first']);
    assert.deepEqual(await p2, ['b:fifo', 'second']);
    t0 = Date.now();
    assert.deepEqual(await r.multi().blpop('b:none', 10).exec(), [[null, null]]);
    assert.ok(Date.now() - t0 < 1000);
    later(() => other.zadd('b:z', 7, 'm'));
    assert.deepEqual(await r.bzpopmin('b:z', 5), ['b:z', 'm', '7']);
  },

  async auth() {
    const bad = client({ port: AUTH_PORT, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: true });
    await rejects(bad.get('a'), /NOAUTH|Authentication required/);
    const wrong = client({ port: AUTH_PORT, password: 'wrong', maxRetriesPerRequest: 0, retryStrategy: () => null });
    await rejects(wrong.ping(), /WRONGPASS|invalid|closed/);
    const good = client({ port: AUTH_PORT, password: PASSWORD });
    assert.equal(await good.set('a', 'b'), 'OK');
    const user = client({ port: AUTH_PORT, username: 'default', password: PASSWORD });
    assert.equal(await user.get('a'), 'b');
  },

  async reconnect_after_client_kill(r) {
    const victim = client({ connectionName: 'victim' });
    let reconnects = 0;
    victim.on('reconnecting', () => reconnects++);
    const id = await victim.client('ID');
    assert.equal(await victim.client('GETNAME'), 'victim');
    const list = await r.client('LIST');
    assert.match(list, /name=victim/);
    assert.equal(await r.client('KILL', 'ID', id), 1);
    // The next command waits for the reconnect, then runs.
    await sleep(100);
    assert.equal(await victim.ping(), 'PONG');
    assert.ok(reconnects >= 1, 'did not reconnect');
    const id2 = await victim.client('ID');
    assert.notEqual(id2, id);
    assert.equal(await victim.client('GETNAME'), 'victim', 'name restored after reconnect');
    // Kill by ADDR while a command is pending: it is retried on the new connection.
    const info = await victim.client('INFO');
    const addr = /addr=(\S+)/.exec(info)[1];
    assert.equal(await r.client('KILL', addr), 'OK');
    assert.equal(await victim.set('after-kill', 'x'), 'OK');
    assert.equal(await r.get('after-kill'), 'x');
  },

  async large_and_binary_values(r) {
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
    assert.equal(await r.set('v:big', big), 'OK');
    assert.ok((await r.getBuffer('v:big')).equals(big));
    const nasty = Buffer.from('\r\n\0$5\r\n*1\r\n\0\xff\r\n', 'latin1');
    assert.equal(await r.set(nasty, nasty), 'OK');
    assert.ok((await r.getBuffer(nasty)).equals(nasty));
    await r.hset('v:h', nasty, nasty);
    const h = await r.hgetallBuffer('v:h');
    assert.ok(Object.values(h)[0].equals(nasty));
    await r.rpush('v:l', nasty, '');
    const l = await r.lrangeBuffer('v:l', 0, -1);
    assert.ok(l[0].equals(nasty));
    assert.equal(l[1].length, 0);
    const p = r.pipeline();
    for (let i = 0; i < 10; i++) p.set('v:b' + i, big).getBuffer('v:b' + i);
    const res = await p.exec();
    for (let i = 0; i < 10; i++) assert.ok(res[2 * i + 1][1].equals(big));
  },

  async server_commands(r) {
    const info = await r.info();
    assert.match(info, /loading:0/);
    assert.match(info, /redis_version:/);
    assert.equal(await r.echo('e'), 'e');
    assert.deepEqual(await r.config('GET', 'maxmemory'), ['maxmemory', '0']);
    assert.ok((await r.dbsize()) > 0);
    assert.equal(await r.flushall('ASYNC'), 'OK');
    assert.equal(await r.dbsize(), 0);
  },
};

(async () => {
  const failed = [];
  const r = client();
  await r.flushall();
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
  console.log(`ioredis ${require('ioredis/package.json').version}: ${total - failed.length}/${total} sections passed`);
  if (failed.length) console.log('failed: ' + failed.join(', '));
  for (const c of opened) c.disconnect();
  process.exit(failed.length ? 1 : 0);
})();
setTimeout(() => { console.log('FAIL: ioredis suite timed out'); process.exit(2); }, 110000).unref();

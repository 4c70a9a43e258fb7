#!/usr/bin/env node
// Edge hub tests beyond the sync conformance suites, against the built worker
// (../build/index.js) under Miniflare 4 on 127.0.0.1:
//   persistence   acknowledged writes (HTTP and SYNC.W, a 3 MiB value chunked over rows)
//                 survive a hard kill of the runtime (SIGKILL workerd, same persist dir),
//                 and so does the write-dedupe memory (resent writes apply once)
//   alarm         keys expire through the alarm with no client connected and the object
//                 evicted (its in-memory engine gone): storage no longer holds them
//   hibernation   a subscribed socket keeps receiving changes after the object is evicted
//                 with its sockets hibernated (Miniflare's unsafeEvictDurableObject), and
//                 after a natural idle period when the runtime evicts it on its own
//   upstash       the @upstash/redis client, unchanged, against /v1/ns/{ns} and the root
//                 (default namespace); a read-only token refused on writes
// Every step has a deadline; every runtime started here is killed at the end.
'use strict';
const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');
const { start, hibernate } = require('./miniflare.cjs');

const SECRET = 'edge-test-secret-' + crypto.randomBytes(6).toString('hex');
const started = [];
const only = process.env.RECACHED_EDGE_TESTS ? process.env.RECACHED_EDGE_TESTS.split(',') : null;

function b64url(x) {
  return Buffer.from(x).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}
/** An HS256 token as the engine mints it (engine/src/sync/token.rs). */
function token(sub, read, write, ttlSecs = 3600) {
  const head = b64url('{"alg":"HS256","typ":"JWT"}');
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttlSecs, read, write }));
  const sig = crypto.createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${head}.${body}.${sig}`;
}
const ADMIN = token('admin', ['*'], ['*']);

async function boot(opts = {}) {
  const h = await start({ vars: { SYNC_SECRET: SECRET, ...(opts.vars || {}) }, persist: opts.persist || false });
  started.push(h);
  return h;
}
function killRuntime(h) {
  for (const pid of h.runtimePids) {
    try { process.kill(pid, 'SIGKILL'); } catch (_) {}
  }
}

async function http(base, cmd, tok = ADMIN) {
  const r = await fetch(base + '/', { method: 'POST', headers: { authorization: `Bearer ${tok}` }, body: JSON.stringify(cmd) });
  return { status: r.status, body: await r.json() };
}
async function metric(base, name) {
  const t = await (await fetch(base + '/metrics')).text();
  const line = t.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : undefined;
}
async function until(what, ms, f) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- a minimal RESP3 sync client over `ws` -------------------------------------------------
function encode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}
/** Parses one RESP3 value at `i`; returns [value, next] or null when incomplete. */
function parse(buf, i) {
  const nl = buf.indexOf('\r\n', i);
  if (nl < 0) return null;
  const t = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, nl);
  let p = nl + 2;
  switch (t) {
    case '+': case ',': case '(': return [line, p];
    case '-': case '!': return [{ error: line }, p];
    case ':': return [Number(line), p];
    case '#': return [line === 't', p];
    case '_': return [null, p];
    case '$': case '=': {
      const n = Number(line);
      if (n < 0) return [null, p];
      if (buf.length < p + n + 2) return null;
      return [buf.toString('utf8', p, p + n), p + n + 2];
    }
    case '*': case '~': case '>': case '%': case '|': {
      const n = Number(line) * (t === '%' || t === '|' ? 2 : 1);
      if (n < 0) return [null, p];
      const out = [];
      for (let k = 0; k < n; k++) {
        const r = parse(buf, p);
        if (!r) return null;
        out.push(r[0]);
        p = r[1];
      }
      return [t === '>' ? { push: out } : out, p];
    }
    default: throw new Error(`bad RESP type ${t}`);
  }
}
class SyncSocket {
  constructor(url) {
    this.frames = [];
    this.buf = Buffer.alloc(0);
    this.ws = new WebSocket(url);
    this.closed = null;
    this.open = new Promise((res, rej) => { this.ws.once('open', res); this.ws.once('error', rej); });
    this.ws.on('message', (data) => {
      this.buf = Buffer.concat([this.buf, data]);
      let i = 0;
      for (;;) {
        const r = parse(this.buf, i);
        if (!r) break;
        this.frames.push(r[0]);
        i = r[1];
      }
      this.buf = this.buf.subarray(i);
    });
    this.ws.on('close', (code, reason) => { this.closed = [code, reason.toString()]; });
  }
  send(...args) { this.ws.send(encode(args)); }
  async next(what, ms = 10000) {
    await until(what, ms, () => this.frames.length > 0 || this.closed);
    if (!this.frames.length) throw new Error(`socket closed ${JSON.stringify(this.closed)} while waiting for ${what}`);
    return this.frames.shift();
  }
  /** Waits for a sync.change push naming `key` (and `value`, when given), skipping others. */
  async change(key, value, ms = 10000) {
    for (;;) {
      const f = await this.next(`a change of ${key}`, ms);
      const text = f && f.push && f.push[0] === 'sync.change' ? JSON.stringify(f.push) : '';
      if (text.includes(JSON.stringify(key)) && (value === undefined || text.includes(JSON.stringify(value)))) return f;
    }
  }
  close() { try { this.ws.terminate(); } catch (_) {} }
}
async function subscriber(wsUrl, id, patterns = ['*']) {
  const s = new SyncSocket(wsUrl);
  await s.open;
  s.send('SYNC.HELLO', 1, ADMIN, id);
  const hello = await s.next('HELLO reply');
  assert.ok(Array.isArray(hello) && hello[0] === 'proto', `HELLO: ${JSON.stringify(hello)}`);
  s.send('SYNC.SUB', patterns.length, ...patterns);
  const sub = await s.next('SUB reply');
  assert.strictEqual(sub[0], 'mode', `SUB: ${JSON.stringify(sub)}`);
  // Snapshot chunks (if any) and sync.live.
  for (;;) {
    const f = await s.next('sync.live');
    if (f && f.push && f.push[0] === 'sync.live') break;
  }
  return s;
}

// --- the tests -------------------------------------------------------------------------------
const tests = {};

tests.persistence = async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recached-edge-persist-'));
  try {
    // Bodies up to 4 MiB: the 1 MiB appends below are JSON commands.
    const vars = { SYNC_MAX_MESSAGE: '4mb' };
    let h = await boot({ persist: dir, vars });
    const base = `${h.url}/v1/ns/persist`;
    const want = {
      s: ['SET', 's', 'hello'], n: ['INCRBY', 'n', 41], l: ['RPUSH', 'l', 'a', 'b', 'c'], h: ['HSET', 'h', 'f', 'v', 'g', 'w'],
      z: ['ZADD', 'z', 1.5, 'm', 2, 'o'], set: ['SADD', 'set', 'x', 'y'], ttl: ['SET', 'ttl', 'v', 'EX', 3600],
    };
    for (const c of Object.values(want)) assert.strictEqual((await http(base, c)).status, 200, JSON.stringify(c));
    // A value of 3 MiB: over a storage row (2 MB), so it is chunked.
    const piece = 'x'.repeat(1 << 20);
    for (let i = 0; i < 3; i++) assert.strictEqual((await http(base, ['APPEND', 'big', piece])).status, 200);
    await http(base, ['DEL', 's']);
    await http(base, ['SET', 's', 'again']);
    // A sync write, acknowledged over the WebSocket.
    const ws = await subscriber(`${h.url.replace('http', 'ws')}/v1/ns/persist/ws`, 'p1');
    ws.send('SYNC.W', 1, 'SET', 'viaws', 'acked');
    const ack = await ws.next('ack');
    assert.ok(Array.isArray(ack) && ack[0] === 1 && ack[2] === 'OK', `ack ${JSON.stringify(ack)}`);
    ws.send('SYNC.W', 2, 'INCR', 'once');
    const ack2 = await ws.next('ack of INCR');
    assert.ok(Array.isArray(ack2) && ack2[0] === 2 && ack2[2] === 1, `ack ${JSON.stringify(ack2)}`);
    const before = (await http(base, ['INFO'])).status;
    assert.strictEqual(before, 200);
    // Hard kill right after the ack: no graceful shutdown, no flush.
    ws.close();
    killRuntime(h);
    await h.mf.dispose().catch(() => {});
    h = await boot({ persist: dir, vars });
    const b2 = `${h.url}/v1/ns/persist`;
    const get = async (c) => (await http(b2, c)).body.result;
    assert.strictEqual(await get(['GET', 's']), 'again');
    assert.strictEqual(await get(['GET', 'n']), '41');
    assert.deepStrictEqual(await get(['LRANGE', 'l', 0, -1]), ['a', 'b', 'c']);
    assert.deepStrictEqual(await get(['HGETALL', 'h']), ['f', 'v', 'g', 'w']);
    assert.deepStrictEqual(await get(['ZRANGE', 'z', 0, -1, 'WITHSCORES']), ['m', '1.5', 'o', '2']);
    assert.deepStrictEqual((await get(['SMEMBERS', 'set'])).sort(), ['x', 'y']);
    const ttl = await get(['TTL', 'ttl']);
    assert.ok(ttl > 3500 && ttl <= 3600, `ttl ${ttl}`);
    assert.strictEqual(await get(['STRLEN', 'big']), 3 << 20);
    assert.strictEqual(await get(['GET', 'viaws']), 'acked');
    assert.strictEqual(await get(['DBSIZE']), 10);
    // The dedupe memory survived too: the same client resending both writes (as after a
    // lost ack) gets the first runs' acks back, and the INCR is not applied again.
    const again = await subscriber(`${h.url.replace('http', 'ws')}/v1/ns/persist/ws`, 'p1');
    again.send('SYNC.W', 1, 'SET', 'viaws', 'acked');
    again.send('SYNC.W', 2, 'INCR', 'once');
    // (seq, offset, reply) as first answered; the changes are not sent again.
    assert.deepStrictEqual((await again.next('resent ack 1')).slice(0, 3), ack.slice(0, 3));
    assert.deepStrictEqual((await again.next('resent ack 2')).slice(0, 3), ack2.slice(0, 3));
    assert.strictEqual(await get(['GET', 'once']), '1', 'a resent write applied once across the kill');
    again.send('SYNC.W', 3, 'INCR', 'once');
    assert.strictEqual((await again.next('ack 3'))[2], 2);
    again.close();
    // The stream continues where it was (same replid, offset): a resume is possible.
    assert.ok((await metric(b2, 'recached_sync_offset')) >= 12);
    killRuntime(h);
    await h.mf.dispose().catch(() => {});
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

tests.alarm = async () => {
  const h = await boot();
  const ns = 'alarm';
  const base = `${h.url}/v1/ns/${ns}`;
  await http(base, ['SET', 'short', 'v', 'PX', 1500]);
  await http(base, ['SET', 'other', 'v', 'PX', 1800]);
  await http(base, ['SET', 'long', 'v', 'EX', 3600]);
  assert.strictEqual(await metric(base, 'recached_keys'), 3);
  // No client, and no engine in memory: only the alarm can remove the keys from storage.
  await hibernate(h.mf, ns);
  await sleep(3000);
  await hibernate(h.mf, ns);
  // This request rebuilds the engine from storage; expired rows would load as keys.
  assert.strictEqual(await metric(base, 'recached_keys'), 1, 'the alarm deleted both expired keys from storage');
  assert.strictEqual((await http(base, ['EXISTS', 'short', 'other', 'long'])).body.result, 1);
};

tests.hibernation = async () => {
  const h = await boot();
  const ns = 'hib';
  const base = `${h.url}/v1/ns/${ns}`;
  const wsUrl = `${h.url.replace('http', 'ws')}/v1/ns/${ns}/ws`;
  const a = await subscriber(wsUrl, 'sub-a', ['room:*']);
  const b = await subscriber(wsUrl, 'sub-b', ['*']);
  await http(base, ['SET', 'room:1', 'before']);
  await a.change('room:1', 'before');
  await b.change('room:1', 'before');
  const loaded1 = await metric(base, 'recached_edge_loaded_ms');
  // Forced: evict the object, keeping its sockets (hibernated).
  await hibernate(h.mf, ns);
  await http(base, ['SET', 'room:1', 'after-evict']);
  await a.change('room:1', 'after-evict');
  await b.change('room:1', 'after-evict');
  const loaded2 = await metric(base, 'recached_edge_loaded_ms');
  assert.ok(loaded2 > loaded1, `the object was rebuilt (loaded at ${loaded1} then ${loaded2})`);
  // A write from a hibernated socket: its attachment (grant, subscription) came back.
  b.send('SYNC.W', 1, 'SET', 'room:2', 'from-b');
  const ack = await b.next('ack after wake');
  assert.ok(Array.isArray(ack) && ack[2] === 'OK', `ack ${JSON.stringify(ack)}`);
  await a.change('room:2', 'from-b');
  // Natural: idle sockets only; workerd evicts an object after ~10 s without events.
  await sleep(12000);
  await http(base, ['SET', 'room:1', 'after-idle']);
  await a.change('room:1', 'after-idle');
  await b.change('room:1', 'after-idle');
  const loaded3 = await metric(base, 'recached_edge_loaded_ms');
  if (loaded3 > loaded2) console.log('  hibernation: the runtime evicted the idle object on its own; the socket still got the change');
  else console.log('  hibernation: NOTE the runtime did not evict the idle object in 12 s; the forced eviction above is the proof');
  a.close();
  b.close();
};

tests.upstash = async () => {
  const { Redis } = require('@upstash/redis');
  const h = await boot({ vars: { SYNC_TOKEN: 'readonly-static:read=*;sub=ro' } });
  for (const url of [`${h.url}/v1/ns/upstash`, h.url]) {
    const redis = new Redis({ url, token: ADMIN, enableTelemetry: false });
    assert.strictEqual(await redis.set('greeting', 'hello'), 'OK');
    assert.strictEqual(await redis.get('greeting'), 'hello');
    await redis.set('obj', { a: 1, b: [2, 3] });
    assert.deepStrictEqual(await redis.get('obj'), { a: 1, b: [2, 3] });
    assert.strictEqual(await redis.incr('counter'), 1);
    assert.strictEqual(await redis.incr('counter'), 2);
    assert.strictEqual(await redis.expire('counter', 100), 1);
    const ttl = await redis.ttl('counter');
    assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
    assert.strictEqual(await redis.hset('user:1', { name: 'ann', visits: 3 }), 2);
    assert.deepStrictEqual(await redis.hgetall('user:1'), { name: 'ann', visits: 3 });
    assert.strictEqual(await redis.lpush('list', 'a', 'b', 'c'), 3);
    assert.deepStrictEqual(await redis.lrange('list', 0, -1), ['c', 'b', 'a']);
    assert.strictEqual(await redis.zadd('board', { score: 10, member: 'ann' }, { score: 5, member: 'bob' }), 2);
    assert.deepStrictEqual(await redis.zrange('board', 0, -1), ['bob', 'ann']);
    assert.deepStrictEqual(await redis.zrange('board', 0, -1, { withScores: true }), ['bob', 5, 'ann', 10]);
    const p = redis.pipeline();
    p.set('p1', 'one');
    p.incr('pc');
    p.get('p1');
    p.hget('user:1', 'name');
    assert.deepStrictEqual(await p.exec(), ['OK', 1, 'one', 'ann']);
    const m = redis.multi();
    m.set('m1', 'x');
    m.incrby('mc', 5);
    m.get('m1');
    assert.deepStrictEqual(await m.exec(), ['OK', 5, 'x']);
    // Errors come back as errors.
    await assert.rejects(redis.incr('greeting'), /not an integer/);
    // Read-only tokens: a JWT with no write patterns, and a static token.
    for (const ro of [token('reader', ['*'], []), 'readonly-static']) {
      const r = new Redis({ url, token: ro, enableTelemetry: false });
      assert.strictEqual(await r.get('greeting'), 'hello');
      await assert.rejects(r.set('greeting', 'bye'), /NOPERM/);
      await assert.rejects(r.incr('counter'), /NOPERM/);
      const rp = r.pipeline();
      rp.get('greeting');
      rp.set('greeting', 'bye');
      await assert.rejects(rp.exec(), /NOPERM/);
      await assert.rejects(r.multi().set('greeting', 'bye').exec(), /NOPERM/);
    }
    assert.strictEqual(await redis.get('greeting'), 'hello', 'refused writes changed nothing');
    // A forged token is a 401.
    const bad = new Redis({ url, token: token('x', ['*'], ['*']).slice(0, -2) + 'AA', enableTelemetry: false, retry: false });
    await assert.rejects(bad.get('greeting'), /Unauthorized/);
  }
};

(async () => {
  const deadline = setTimeout(() => {
    console.error('edge tests: overall deadline (240 s) passed');
    for (const h of started) killRuntime(h);
    process.exit(2);
  }, 240000);
  let failed = 0;
  for (const [name, f] of Object.entries(tests)) {
    if (only && !only.includes(name)) continue;
    const t0 = Date.now();
    try {
      await f();
      console.log(`ok - ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  clearTimeout(deadline);
  for (const h of started) killRuntime(h);
  process.exit(failed ? 1 : 0);
})();

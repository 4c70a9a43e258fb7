// Local `get` from JS against `Map.get`, in the page (scripts/bench-browser.sh runs it in
// Chromium): the same 1,024 string keys with short string values, read round-robin.
// Each contender runs ROUNDS timed rounds of at least MIN_MS, alternating; the best round
// counts (the least disturbed by GC, JIT tiering and the other processes of a shared machine).
import init, { createCache } from "./recached.js";

const KEYS = 1024;
const ROUNDS = 7;
const MIN_MS = 300;

/** Ops/s of one timed round (at least MIN_MS) of `op` over the keys. */
function round(op) {
  let n = 0;
  let sink = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < MIN_MS) {
    for (let i = 0; i < 100_000; i++) {
      const v = op(i & (KEYS - 1));
      sink += v === null ? 0 : v.length;
    }
    n += 100_000;
    elapsed = performance.now() - start;
  }
  if (sink === 0) throw new Error("nothing read");
  return (n / elapsed) * 1000;
}

/** The best round of each contender; rounds alternate so that JIT tiering, GC and a busy
 * machine hit them alike. */
function measure(contenders) {
  const best = Object.fromEntries(Object.keys(contenders).map((k) => [k, 0]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, op] of Object.entries(contenders)) best[name] = Math.max(best[name], round(op));
  }
  return best;
}

async function main() {
  await init();
  const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}:name`);
  const cache = createCache({ channel: false });
  // LRU with a cap: every read counts as an access (memo hits are recorded in JS and handed
  // to the engine every 64 reads).
  const lru = createCache({ channel: false, maxKeys: 100_000, eviction: "allkeys-lru" });
  // Keys with a TTL are never memoized: every `get` calls into wasm and looks the key up in
  // the engine (the cost of a first read).
  const ttl = createCache({ channel: false });
  const map = new Map();
  for (const [i, k] of keys.entries()) {
    await cache.set(k, `value-${i}`);
    await lru.set(k, `value-${i}`);
    await ttl.set(k, `value-${i}`, { ex: 3600 });
    map.set(k, `value-${i}`);
  }
  for (const k of keys) if (cache.get(k) !== map.get(k) || lru.get(k) !== map.get(k) || ttl.get(k) !== map.get(k)) throw new Error(`mismatch at ${k}`);
  const best = measure({
    get: (i) => cache.get(keys[i]),
    map: (i) => map.get(keys[i]),
    lru: (i) => lru.get(keys[i]),
    engine: (i) => ttl.get(keys[i]),
  });
  const hits = lru.stats().keyspaceHits;
  if (hits < 1e6) throw new Error(`the LRU cache counted only ${hits} reads`);
  const result = { get: best.get, map: best.map, lru: best.lru, engine: best.engine, ratio: best.map / best.get };
  document.getElementById("out").textContent = JSON.stringify(result, null, 2);
  window.__bench = result;
  cache.close();
  lru.close();
  ttl.close();
}

main().catch((e) => { window.__bench = { error: String(e && e.stack || e) }; });

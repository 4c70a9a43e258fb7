// rate-limiter-flexible's RateLimiterRedis (Lua-scripted) on ioredis and on node-redis:
// consume, get, delete, penalty, reward, block. usage: node rate_limiter_flexible.cjs PORT
const { RateLimiterRedis } = require('rate-limiter-flexible');
const Redis = require('ioredis');
const { createClient } = require('redis');
const port = Number(process.argv[2]);
async function check(name, client, useRedisPackage) {
  const opts = { storeClient: client, points: 5, duration: 60, keyPrefix: `rlf-${name}-${Date.now()}` };
  if (useRedisPackage) opts.useRedisPackage = true;
  const lim = new RateLimiterRedis(opts);
  const results = [];
  for (let i = 0; i < 7; i++) {
    try { const r = await lim.consume('user'); results.push(r.remainingPoints); }
    catch (e) { if (e instanceof Error) throw e; results.push('limited'); }
  }
  const want = JSON.stringify([4, 3, 2, 1, 0, 'limited', 'limited']);
  if (JSON.stringify(results) !== want) throw new Error(`${name}: ${JSON.stringify(results)}`);
  const got = await lim.get('user');
  if (!got || got.consumedPoints !== 7) throw new Error(`${name} get: ${JSON.stringify(got)}`);
  await lim.delete('user');
  await lim.consume('user');
  await lim.penalty('user', 2);
  await lim.reward('user', 1);
  const after = await lim.get('user');
  if (after.consumedPoints !== 2) throw new Error(`${name} penalty/reward: ${after.consumedPoints}`);
  await lim.block('user', 10);
  try { await lim.consume('user'); throw new Error(`${name}: blocked key consumed`); } catch (e) { if (e instanceof Error) throw e; }
  console.log('ok', name);
}
(async () => {
  const io = new Redis({ host: '127.0.0.1', port, enableOfflineQueue: false, lazyConnect: true });
  await io.connect();
  await check('ioredis', io, false);
  io.disconnect();
  const nr = createClient({ socket: { host: '127.0.0.1', port } });
  await nr.connect();
  await check('node-redis', nr, true);
  await nr.quit();
})().catch((e) => { console.error('FAIL', e); process.exit(1); });

// A consumer of the npm package `recached`, type-checked against its .d.ts (`tsc --noEmit`)
// and run in Chromium by run.mjs (scripts/test.d/35-ui-npm.sh).
//
// ?mode=api (default): exercises the API with types — local reads/writes, TTL, listeners,
// JSON, bytes, transactions — and with ?hub=ws://…, connect: acks, two caches sharing a
// channel (one socket, follower writes through the leader). Results go to
// `window.__results` and the page.
// ?mode=tab&channel=NAME[&hub=ws://…]: one "tab" of the cross-tab end-to-end tests; the
// cache is `window.recached`, its state is rendered in #state.
import init, {
  createCache,
  type Cache,
  type CacheOptions,
  type ChangeListener,
  type Reply,
  type Status,
  type TabRole,
  type ZMember,
} from "recached";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

declare global {
  interface Window {
    __results?: { done: boolean; checks: Check[]; error?: string };
    recached?: Cache;
  }
}

const checks: Check[] = [];

function check(name: string, ok: boolean, detail: unknown = ""): void {
  checks.push({ name, ok, detail: typeof detail === "string" ? detail : JSON.stringify(detail) });
  const li = document.createElement("li");
  li.className = ok ? "ok" : "bad";
  li.textContent = `${ok ? "ok" : "FAIL"} ${name} ${ok ? "" : String(detail)}`;
  document.getElementById("checks")?.appendChild(li);
}

function equal<T>(name: string, got: T, want: T): void {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  check(name, g === w, `got ${g}, want ${w}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<boolean> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > ms) {
      check(`wait: ${what}`, false, `timed out after ${ms} ms`);
      return false;
    }
    await sleep(5);
  }
  return true;
}

/** Never called: each line must fail to type-check (tsc reports an unused @ts-expect-error). */
function typeErrors(cache: Cache): void {
  // @ts-expect-error eviction is a policy name
  createCache({ eviction: "sometimes" });
  // @ts-expect-error channel is a name or false
  createCache({ channel: true });
  // @ts-expect-error get takes a key
  cache.get(42n);
  // @ts-expect-error set's options are typed
  void cache.set("k", "v", { ex: "ten" });
  // @ts-expect-error status is a union of names
  const s: Status = "sleeping";
  // @ts-expect-error tabRole is a union of names
  const r: TabRole = cache.tabRole === "alone" ? "boss" : "leader";
  void s;
  void r;
}

async function localApi(): Promise<void> {
  const options: CacheOptions = { maxKeys: 1000, maxMemory: "1mb", eviction: "allkeys-lru", channel: false };
  const cache: Cache = createCache(options);
  equal("tabRole alone", cache.tabRole, "alone" as TabRole);
  const events: string[] = [];
  const listener: ChangeListener = (key, event) => events.push(`${event} ${key ?? "*"}`);
  const off = cache.on("user:*", listener);
  equal("set resolves OK", await cache.set("user:1", "ann", { ex: 60 }), "OK");
  equal("get", cache.get("user:1"), "ann");
  equal("ttl", cache.ttl("user:1"), 60);
  equal("incrBy", await cache.incrBy("n", 41), 41);
  equal("incr", await cache.incr("n"), 42);
  await cache.hset("user:1:profile", { name: "ann", plan: "pro" });
  equal("hgetall", cache.hgetall("user:1:profile"), { name: "ann", plan: "pro" });
  await cache.rpush("log", ["a", "b", "c"]);
  equal("lrange", cache.lrange("log", 0, -1), ["a", "b", "c"]);
  const members: ZMember[] = [
    { score: 2, member: "b" },
    { score: 1, member: "a" },
  ];
  await cache.zadd("z", members);
  equal("zrange withScores", cache.zrange("z", 0, -1, { withScores: true }), [
    ["a", 1],
    ["b", 2],
  ]);
  await cache.setJSON("cfg", { dark: true, n: [1, 2] });
  const cfg = cache.getJSON("cfg") as { dark: boolean; n: number[] };
  equal("getJSON", cfg.n.length === 2 && cfg.dark, true);
  await cache.set("bin", new Uint8Array([0, 255, 1]));
  equal("getBytes", Array.from(cache.getBytes("bin") ?? []), [0, 255, 1]);
  const reply: Reply = await cache.command(["LLEN", "log"]);
  equal("command", reply, 3);
  const replies: Reply[] = await cache.multi([
    ["SET", "t", "1"],
    ["INCR", "t"],
  ]);
  equal("multi", replies, ["OK", 2]);
  let refused = "";
  try {
    await cache.command(["INCR", "log"]);
  } catch (e) {
    refused = (e as Error).message;
  }
  check("an error reply rejects", refused.startsWith("WRONGTYPE"), refused);
  equal("keys", cache.keys("user:*"), ["user:1", "user:1:profile"]);
  await cache.set("short", "v", { px: 50 });
  await waitFor("short to expire", () => cache.exists("short") === 0, 2000);
  check("listener heard set and hset", events.includes("set user:1") && events.includes("hset user:1:profile"), events);
  off();
  const status: Status = cache.status;
  equal("status offline", status, "offline");
  cache.close();
  equal("status closed", cache.status, "closed");
}

async function hubApi(hub: string): Promise<void> {
  const prefix = `npm${Math.random().toString(36).slice(2)}:`;
  const channel = `npm-consumer-${prefix}`;
  const a = createCache({ channel });
  const statuses: Status[] = [];
  const offStatus = a.onStatus((s) => statuses.push(s));
  a.connect({ urls: [hub], token: "", patterns: [`${prefix}*`] });
  const b = createCache({ channel });
  b.connect({ urls: [hub], patterns: [`${prefix}*`] });
  if (!(await waitFor("both live", () => a.status === "live" && b.status === "live", 10_000))) return;
  check("status went connecting → live", statuses.includes("connecting") && statuses.includes("live"), statuses);
  equal("roles", [a.tabRole, b.tabRole], ["leader", "follower"] as TabRole[]);
  const p = b.set(`${prefix}k`, "v");
  equal("follower write applies at once", b.get(`${prefix}k`), "v");
  equal("follower write acked by the hub", await p, "OK");
  equal("leader sees it", a.get(`${prefix}k`), "v");
  equal("hub reply through the leader", await b.incrBy(`${prefix}n`, 7), 7);
  // A second, independent cache (its own socket) sees the writes through the hub.
  const other = createCache({ channel: false });
  other.connect({ urls: [hub], patterns: [`${prefix}*`] });
  await waitFor("other sees the writes", () => other.get(`${prefix}n`) === "7", 5000);
  await other.set(`${prefix}from-other`, "x");
  await waitFor("both tabs see other's write", () => a.get(`${prefix}from-other`) === "x" && b.get(`${prefix}from-other`) === "x", 5000);
  offStatus();
  a.close();
  await waitFor("b takes over", () => b.tabRole === "leader" && b.status === "live", 1000);
  equal("write after takeover", await b.incr(`${prefix}n`), 8);
  b.close();
  other.close();
}

function renderTab(cache: Cache): void {
  const el = document.getElementById("state");
  if (!el) return;
  const draw = (): void => {
    if (cache.status === "closed") return;
    const keys = cache.keys("*");
    const lines = keys.map((k) => `${k} = ${cache.type(k) === "string" ? cache.get(k) : cache.type(k)}`);
    el.textContent = `role: ${cache.tabRole}\nstatus: ${cache.status}\n${lines.join("\n")}`;
  };
  cache.on("*", () => draw());
  cache.onStatus(() => draw());
  setInterval(draw, 100);
  draw();
}

async function main(): Promise<void> {
  await init();
  const params = new URLSearchParams(location.search);
  const hub = params.get("hub");
  if (params.get("mode") === "tab") {
    const cache = createCache({ channel: params.get("channel") ?? "recached" });
    if (hub) cache.connect({ urls: [hub], patterns: [params.get("pattern") ?? "*"] });
    window.recached = cache;
    renderTab(cache);
    return;
  }
  if (params.get("never") === "yes") typeErrors(createCache());
  await localApi();
  if (hub) await hubApi(hub);
}

main().then(
  () => {
    if (new URLSearchParams(location.search).get("mode") !== "tab") window.__results = { done: true, checks };
  },
  (e: unknown) => {
    window.__results = { done: true, checks, error: String(e instanceof Error ? e.stack : e) };
  },
);

//! Memory and key caps: Redis's eviction policies, sampled the way Redis samples.
//!
//! Each entry carries a 32-bit `access` word: the LRU clock in seconds, or for LFU the
//! last-decrement time in minutes (high 24 bits) and a logarithmic counter (low 8 bits),
//! as Redis packs them.

use crate::engine::{Config, Engine};

/// `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    VolatileLru,
    AllKeysLfu,
    VolatileLfu,
    AllKeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    /// The name as `CONFIG GET maxmemory-policy` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::VolatileLru => "volatile-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    /// Parses a policy name (case-insensitive).
    pub fn parse(name: &str) -> Option<Policy> {
        Some(match name.to_ascii_lowercase().as_str() {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllKeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "volatile-lfu" => Policy::VolatileLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    fn volatile_only(self) -> bool {
        matches!(self, Policy::VolatileLru | Policy::VolatileLfu | Policy::VolatileRandom | Policy::VolatileTtl)
    }
}

const LFU_INIT_VAL: u32 = 5;

/// The access clock for the configured policy.
pub(crate) fn access_clock(config: &Config, now_ms: u64) -> u32 {
    if config.policy.is_lfu() {
        ((now_ms / 60_000) as u32) & 0x00FF_FFFF
    } else {
        (now_ms / 1000) as u32
    }
}

/// The access word of a newly written key.
pub(crate) fn initial_access(config: &Config, now_ms: u64) -> u32 {
    if config.policy.is_lfu() {
        (access_clock(config, now_ms) << 8) | LFU_INIT_VAL
    } else {
        access_clock(config, now_ms)
    }
}

pub(crate) fn lfu_decayed(access: u32, now_min: u32, decay_time: u32) -> u32 {
    let counter = access & 0xFF;
    let last = access >> 8;
    let elapsed = if now_min >= last { now_min - last } else { 0x00FF_FFFF - last + now_min };
    let periods = elapsed.checked_div(decay_time).unwrap_or(0);
    counter.saturating_sub(periods)
}

/// Updates an access word on a key access.
pub(crate) fn touch(policy: Policy, access: u32, clock: u32, _now_ms: u64, log_factor: u32, decay: u32, r: f64) -> u32 {
    if !policy.is_lfu() {
        return clock;
    }
    let mut counter = lfu_decayed(access, clock, decay);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * log_factor as f64 + 1.0);
        if r < p {
            counter += 1;
        }
    }
    (clock << 8) | counter
}

/// Whether the engine is over one of its caps.
fn over_cap(eng: &Engine) -> bool {
    (eng.config.maxmemory > 0 && eng.used > eng.config.maxmemory)
        || (eng.config.maxkeys > 0 && eng.key_count() >= eng.config.maxkeys)
}

/// Evicts keys until the engine is under its caps. Returns false when it cannot
/// (policy `noeviction`, or nothing evictable), in which case the write is refused with
/// `-OOM`.
pub(crate) fn make_room(eng: &mut Engine, now_ms: u64) -> bool {
    if eng.config.maxmemory == 0 && eng.config.maxkeys == 0 {
        return true;
    }
    // Safety valve: never loop more than the number of keys.
    let mut guard = eng.key_count() + 1;
    while over_cap(eng) {
        if eng.config.policy == Policy::NoEviction || guard == 0 {
            return false;
        }
        guard -= 1;
        match pick_victim(eng, now_ms) {
            Some((db, key)) => eng.evict_key(db, &key),
            None => return false,
        }
    }
    true
}

/// Samples `maxmemory-samples` candidates and returns the best victim for the policy.
fn pick_victim(eng: &mut Engine, now_ms: u64) -> Option<(usize, crate::value::Blob)> {
    let policy = eng.config.policy;
    if policy == Policy::VolatileTtl {
        // The deadline index is ordered: the soonest-expiring key is exact, not sampled.
        return eng
            .dbs
            .iter()
            .enumerate()
            .filter_map(|(i, db)| db.expires.first().map(|(t, k)| (*t, i, k.clone())))
            .min_by_key(|(t, _, _)| *t)
            .map(|(_, i, k)| (i, k));
    }
    let total = eng.key_count();
    if total == 0 {
        return None;
    }
    let samples = eng.config.maxmemory_samples.max(1);
    let clock_now = access_clock(&eng.config, now_ms);
    let mut best: Option<(u64, usize, crate::value::Blob)> = None;
    let mut found = 0;
    let mut tries = samples * 16;
    while found < samples && tries > 0 {
        tries -= 1;
        // Pick a database weighted by size, then a slot in it.
        let mut idx = eng.rng.below(total);
        let mut db_index = 0;
        for (i, db) in eng.dbs.iter().enumerate() {
            if idx < db.len() {
                db_index = i;
                break;
            }
            idx -= db.len();
        }
        let Some((key, entry)) = eng.dbs[db_index].get_index(idx) else { continue };
        if policy.volatile_only() && entry.expire_at == 0 {
            continue;
        }
        found += 1;
        let score: u64 = match policy {
            Policy::AllKeysRandom | Policy::VolatileRandom => u64::MAX,
            Policy::AllKeysLfu | Policy::VolatileLfu => {
                255 - lfu_decayed(entry.access, clock_now, eng.config.lfu_decay_time) as u64
            }
            _ => clock_now.saturating_sub(entry.access) as u64,
        };
        if best.as_ref().map(|(s, _, _)| score > *s).unwrap_or(true) {
            best = Some((score, db_index, key.clone()));
        }
        if score == u64::MAX {
            break;
        }
    }
    if best.is_none() && policy.volatile_only() {
        // Few volatile keys among many: fall back to the deadline index.
        return eng
            .dbs
            .iter()
            .enumerate()
            .find_map(|(i, db)| db.expires.first().map(|(_, k)| (i, k.clone())));
    }
    best.map(|(_, db, key)| (db, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::EventClass;

    /// An engine with `n` string keys `k0..` (each written at its own second), the cap set so
    /// that about `evict` of them must go on the next write.
    fn filled(policy: Policy, n: usize, evict: usize) -> T {
        let mut t = T::new();
        t.eng.config_mut().policy = policy;
        t.eng.config_mut().maxmemory_samples = 16;
        for i in 0..n {
            t.ok(&["SET", &format!("k{}", i), "some-value-of-a-few-bytes"]);
        }
        let per_key = t.eng.used_memory() / n;
        t.eng.config_mut().maxmemory = t.eng.used_memory() - per_key * evict;
        t
    }

    fn alive(t: &T, prefix: &str, range: std::ops::Range<usize>) -> usize {
        range.filter(|i| t.eng.dbs()[0].get(format!("{}{}", prefix, i).as_bytes()).is_some()).count()
    }

    #[test]
    fn noeviction_refuses_writes_with_redis_text() {
        let mut t = filled(Policy::NoEviction, 20, 5);
        t.err(&["SET", "new", "v"], "OOM command not allowed when used memory > 'maxmemory'.");
        assert_eq!(t.eng.key_count(), 20, "nothing evicted");
        // Reads and deletes still work; once under the cap, writes do again.
        t.bulk(&["GET", "k1"], "some-value-of-a-few-bytes");
        for i in 0..8 {
            t.int(&["DEL", &format!("k{}", i)], 1);
        }
        t.ok(&["SET", "new", "v"]);
        assert_eq!(t.eng.stats().evicted_keys, 0);
    }

    #[test]
    fn allkeys_lru_keeps_recently_used_keys() {
        let mut t = filled(Policy::AllKeysLru, 100, 20);
        t.now += 100_000;
        for i in 0..50 {
            t.bulk(&["GET", &format!("k{}", i)], "some-value-of-a-few-bytes");
        }
        t.now += 1_000;
        t.changes();
        t.ok(&["SET", "new", "some-value-of-a-few-bytes"]);
        assert!(t.eng.used_memory() <= t.eng.config().maxmemory + 200);
        assert_eq!(alive(&t, "k", 0..50), 50, "every recently read key survives");
        let evicted = 50 - alive(&t, "k", 50..100);
        assert!(evicted >= 19, "evicted {}", evicted);
        assert_eq!(t.eng.stats().evicted_keys, evicted as u64);
        // Each eviction is a DEL in the change stream, before the write that caused it.
        let changes = t.changes();
        assert_eq!(changes.len(), evicted + 1);
        assert!(changes[..evicted].iter().all(|c| c.starts_with("DEL k")));
        assert_eq!(changes[evicted], "SET new some-value-of-a-few-bytes");
    }

    #[test]
    fn allkeys_lfu_keeps_frequently_used_keys() {
        let mut t = filled(Policy::AllKeysLfu, 100, 20);
        for _ in 0..10 {
            for i in (0..100).step_by(2) {
                t.cmd(&["GET", &format!("k{}", i)]);
            }
        }
        t.ok(&["SET", "new", "some-value-of-a-few-bytes"]);
        let hot = (0..100).step_by(2).filter(|i| t.eng.dbs()[0].get(format!("k{}", i).as_bytes()).is_some()).count();
        let cold = (1..100).step_by(2).filter(|i| t.eng.dbs()[0].get(format!("k{}", i).as_bytes()).is_some()).count();
        assert_eq!(hot, 50, "every frequently read key survives");
        assert!(cold <= 31, "cold keys left: {}", cold);
    }

    #[test]
    fn volatile_ttl_evicts_the_soonest_deadline_first() {
        let mut t = T::new();
        t.eng.config_mut().policy = Policy::VolatileTtl;
        for i in 0..10 {
            t.ok(&["SET", &format!("p{}", i), "persistent-value"]);
        }
        // Deadlines in shuffled order: v3 soonest, then v7, v1, …
        for (i, secs) in [(0, 90), (1, 30), (2, 80), (3, 10), (4, 70), (5, 60), (6, 50), (7, 20), (8, 100), (9, 40)] {
            t.ok(&["SET", &format!("v{}", i), "volatile-value", "EX", &secs.to_string()]);
        }
        let per_key = t.eng.used_memory() / 20;
        t.eng.config_mut().maxmemory = t.eng.used_memory() - per_key * 3;
        t.changes();
        t.ok(&["SET", "new", "x"]);
        let gone: Vec<String> = t.changes().into_iter().filter(|c| c.starts_with("DEL")).collect();
        assert!(gone.len() >= 3, "{:?}", gone);
        let order = ["DEL v3", "DEL v7", "DEL v1", "DEL v9", "DEL v6"];
        assert_eq!(gone, order[..gone.len()].to_vec());
        assert_eq!(alive(&t, "p", 0..10), 10, "keys without a TTL are never evicted");
        // With no volatile key left, a write over the cap is refused.
        t.eng.config_mut().maxmemory = 1;
        t.err(&["SET", "more", "x"], "OOM command not allowed when used memory > 'maxmemory'.");
        assert_eq!(alive(&t, "v", 0..10), 0);
        assert_eq!(alive(&t, "p", 0..10), 10);
    }

    #[test]
    fn volatile_lru_and_random_only_touch_keys_with_a_ttl() {
        for policy in [Policy::VolatileLru, Policy::VolatileRandom, Policy::VolatileLfu] {
            let mut t = T::new();
            t.eng.config_mut().policy = policy;
            for i in 0..30 {
                t.ok(&["SET", &format!("p{}", i), "persistent-value"]);
            }
            for i in 0..5 {
                t.ok(&["SET", &format!("v{}", i), "volatile-value", "EX", "100"]);
            }
            t.eng.config_mut().maxmemory = t.eng.used_memory() - 10;
            t.ok(&["SET", "new", "x"]);
            assert_eq!(alive(&t, "p", 0..30), 30, "{:?}", policy);
            assert!(alive(&t, "v", 0..5) < 5, "{:?}", policy);
        }
    }

    #[test]
    fn allkeys_random_evicts_until_under_the_cap() {
        let mut t = filled(Policy::AllKeysRandom, 50, 10);
        t.ok(&["SET", "new", "some-value-of-a-few-bytes"]);
        let evicted = t.eng.stats().evicted_keys as usize;
        assert!((10..=12).contains(&evicted), "evicted {}", evicted);
        assert_eq!(t.eng.key_count(), 50 + 1 - evicted);
    }

    #[test]
    fn maxkeys_caps_the_key_count() {
        let mut t = T::new();
        t.eng.config_mut().maxkeys = 10;
        t.eng.config_mut().policy = Policy::AllKeysLru;
        for i in 0..25 {
            t.now += 1_000;
            t.ok(&["SET", &format!("k{}", i), "v"]);
            assert!(t.eng.key_count() <= 10);
        }
        assert_eq!(t.eng.key_count(), 10);
        assert_eq!(t.eng.stats().evicted_keys, 15);
        // Overwriting an existing key at the cap still evicts one first (Redis checks
        // before running any denyoom command), and the newest keys are kept.
        assert!(alive(&t, "k", 20..25) == 5);
        // noeviction with a key cap refuses new writes.
        t.eng.config_mut().policy = Policy::NoEviction;
        t.err(&["SET", "another", "v"], "OOM command not allowed when used memory > 'maxmemory'.");
        assert_eq!(t.eng.key_count(), 10);
    }

    #[test]
    fn eviction_emits_evicted_events_and_keeps_accounting_exact() {
        let mut t = filled(Policy::AllKeysRandom, 30, 5);
        t.eng.config_mut().keyspace_events = EventClass::Evicted.bit();
        t.ok(&["SET", "new", "v"]);
        let events = t.eng.take_events();
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e.event == "evicted" && e.class == EventClass::Evicted));
        let used = t.eng.used_memory();
        t.eng.recount_memory();
        assert_eq!(used, t.eng.used_memory());
    }

    #[test]
    fn new_containers_start_with_a_fresh_access_clock() {
        // Regression: a key created by a container write (LPUSH, SADD, …) got access word 0,
        // which LRU reads as idle since 1970 and LFU as a zero counter, so the newest key
        // was the first victim.
        if crate::command::lookup(b"sadd").is_none() {
            return;
        }
        for policy in [Policy::AllKeysLru, Policy::AllKeysLfu] {
            let mut t = T::new();
            t.eng.config_mut().policy = policy;
            t.int(&["SADD", "fresh", "m"], 1);
            let expect = initial_access(t.eng.config(), t.now);
            assert_eq!(t.eng.dbs()[0].get(b"fresh").map(|e| e.access), Some(expect), "{:?}", policy);
            for i in 0..40 {
                t.ok(&["SET", &format!("k{}", i), "some-value-of-a-few-bytes"]);
            }
            t.eng.config_mut().maxmemory_samples = 64;
            t.eng.config_mut().maxmemory = t.eng.used_memory() - 10;
            t.now += 1_000;
            t.ok(&["SET", "new", "v"]);
            assert_eq!(t.eng.stats().evicted_keys, 1);
        }
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let mut access = initial_access(&Config { policy: Policy::AllKeysLfu, ..Config::default() }, 0);
        assert_eq!(access & 0xFF, LFU_INIT_VAL);
        let mut r = crate::rng::Rng::new(1);
        for _ in 0..1000 {
            access = touch(Policy::AllKeysLfu, access, 0, 0, 10, 1, r.next_f64());
        }
        let c = access & 0xFF;
        assert!((10..40).contains(&c), "counter after 1000 hits: {}", c);
        // Ten minutes idle with decay 1: ten points less.
        assert_eq!(lfu_decayed(access, 10, 1), c - 10);
    }
}

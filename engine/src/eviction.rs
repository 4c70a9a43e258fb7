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
    let periods = if decay_time > 0 { elapsed / decay_time } else { 0 };
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
fn pick_victim(eng: &mut Engine, now_ms: u64) -> Option<(usize, Box<[u8]>)> {
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
    let mut best: Option<(u64, usize, Box<[u8]>)> = None;
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

//! Failed-AUTH throttling per peer IP.
//!
//! Counting per IP rather than per connection matters: an attacker opens as many
//! connections as it likes. After a few free failures every further attempt from that IP
//! gets a time slot, spaced by a delay that doubles with each failure (capped), so the
//! guesses an IP can make per second are bounded no matter how many connections it uses.
//! A success clears the IP's record; records expire after a quiet period.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures allowed before any delay.
const FREE_FAILURES: u32 = 3;
/// Delay after the first throttled failure.
const BASE_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A record with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Records kept at most (the oldest are dropped past it).
const MAX_RECORDS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    next_slot: Instant,
}

/// The throttle.
#[derive(Debug, Default)]
pub struct AuthLimiter {
    records: HashMap<IpAddr, Record>,
}

fn delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    (BASE_DELAY * (1u32 << doublings)).min(MAX_DELAY)
}

impl AuthLimiter {
    /// Asks to check a password from `ip` at `now`. `None`: check it now. `Some(t)`: wait
    /// until `t`, then check it without asking again (the slot is reserved).
    pub fn gate(&mut self, ip: IpAddr, now: Instant) -> Option<Instant> {
        let rec = self.records.get_mut(&ip)?;
        if now.duration_since(rec.last_failure) > FORGET_AFTER {
            self.records.remove(&ip);
            return None;
        }
        let d = delay(rec.failures);
        if d.is_zero() {
            return None;
        }
        if now >= rec.next_slot {
            rec.next_slot = now + d;
            return None;
        }
        let slot = rec.next_slot;
        rec.next_slot = slot + d;
        Some(slot)
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.records.len() >= MAX_RECORDS && !self.records.contains_key(&ip) {
            self.records.retain(|_, r| now.duration_since(r.last_failure) <= FORGET_AFTER);
            if self.records.len() >= MAX_RECORDS {
                // Still full: an attack from very many addresses. Forget the oldest half.
                let mut ages: Vec<Instant> = self.records.values().map(|r| r.last_failure).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                self.records.retain(|_, r| r.last_failure > cut);
            }
        }
        let rec = self.records.entry(ip).or_insert(Record { failures: 0, last_failure: now, next_slot: now });
        rec.failures = rec.failures.saturating_add(1);
        rec.last_failure = now;
        let d = delay(rec.failures);
        if rec.next_slot < now + d {
            rec.next_slot = now + d;
        }
    }

    /// Records a success: the IP starts afresh.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.records.remove(&ip);
    }

    /// Failures currently recorded for an IP.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.records.get(&ip).map(|r| r.failures).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_ip_not_per_connection() {
        let mut l = AuthLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.gate(ip, t0), None);
            l.failed(ip, t0);
        }
        // Throttled now: the next attempt, from any connection of that IP, waits.
        let slot1 = l.gate(ip, t0).expect("throttled");
        assert!(slot1 > t0);
        let slot2 = l.gate(ip, t0).expect("second attempt waits longer");
        assert!(slot2 > slot1);
        l.failed(ip, slot1);
        assert_eq!(l.gate(other, t0), None, "another IP is not affected");
        assert!(delay(FREE_FAILURES + 1) > delay(FREE_FAILURES));
        assert_eq!(delay(100), MAX_DELAY);
        l.succeeded(ip);
        assert_eq!(l.gate(ip, t0), None);
    }

    #[test]
    fn records_are_forgotten() {
        let mut l = AuthLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            l.failed(ip, t0);
        }
        assert!(l.gate(ip, t0).is_some());
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(l.gate(ip, later), None);
        assert_eq!(l.failures(ip), 0);
    }
}

//! `Engine::used_memory()` against the real heap: a counting global allocator measures what
//! the engine actually holds after 100k string keys and after 100k-element containers, and
//! the estimate must be within ±30% of it; after FLUSHALL both return to (near) zero.
//!
//! "Real" is what the allocator hands out, rounded the way glibc's malloc does (a 16-byte
//! aligned chunk with an 8-byte header, 32 bytes at least), which is what the process pays
//! for; the requested byte count is printed beside it.
//!
//! Everything runs in one #[test] so no other test thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use bytes::Bytes;
use recached_engine::db::{Db, Entry};
use recached_engine::value::{blob, Hash, List, Set};
use recached_engine::zset::SortedSet;
use recached_engine::{Engine, NoHost, Session, Value};

struct Counting;

static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            REQUESTED.fetch_add(l.size() as isize, Relaxed);
            CHUNKS.fetch_add(chunk(l.size()), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            REQUESTED.fetch_add(l.size() as isize, Relaxed);
            CHUNKS.fetch_add(chunk(l.size()), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        REQUESTED.fetch_sub(l.size() as isize, Relaxed);
        CHUNKS.fetch_sub(chunk(l.size()), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            REQUESTED.fetch_add(new as isize - l.size() as isize, Relaxed);
            CHUNKS.fetch_add(chunk(new) - chunk(l.size()), Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> (isize, isize) {
    (CHUNKS.load(Relaxed), REQUESTED.load(Relaxed))
}

const N: usize = 100_000;

struct Run {
    eng: Engine,
    sess: Session,
    now: u64,
}

impl Run {
    fn new() -> Run {
        Run { eng: Engine::default(), sess: Session::new(1), now: 1_700_000_000_000 }
    }
    fn cmd(&mut self, args: Vec<Vec<u8>>) {
        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        let r = self.eng.execute(&mut self.sess, &args, self.now, &mut NoHost).into_reply();
        assert!(!r.is_error(), "{:?}", r);
        // The outbox holds copies of every write; a host drains it after each command.
        drop(self.eng.take_changes());
    }
    fn has(name: &str) -> bool {
        recached_engine::lookup(name.as_bytes()).is_some()
    }
}

/// Checks the estimate against the heap growth `real` (chunks) for one case.
fn check(case: &str, estimate: usize, (real, requested): (isize, isize)) {
    let ratio = estimate as f64 / real as f64;
    println!(
        "{:<28} used_memory {:>11}  heap {:>11} (requested {:>11})  ratio {:.2}",
        case, estimate, real, requested, ratio
    );
    assert!((0.7..=1.3).contains(&ratio), "{}: used_memory {} vs real heap {} (ratio {:.2})", case, estimate, real, ratio);
}

fn grown(before: (isize, isize)) -> (isize, isize) {
    let now = heap();
    (now.0 - before.0, now.1 - before.1)
}

/// Fills one container key with `N` elements, through commands when the engine has them
/// (so per-command accounting is what is measured), else by building the value directly
/// (so at least the estimate itself is).
fn container(case: &str, cmd: &str, make: impl Fn(usize) -> Vec<Vec<u8>>, build: impl Fn() -> Value) {
    let mut r = Run::new();
    let before = heap();
    if Run::has(cmd) {
        for i in (0..N).step_by(100) {
            let mut args = vec![cmd.as_bytes().to_vec(), b"big".to_vec()];
            for j in i..i + 100 {
                args.extend(make(j));
            }
            r.cmd(args);
        }
    } else {
        let mut db = Db::default();
        db.insert(b"big", Entry::new(build()));
        r.eng.load_dbs(vec![db]);
    }
    let label = format!("{} ({})", case, if Run::has(cmd) { cmd } else { "built" });
    check(&label, r.eng.used_memory(), grown(before));
    flush_returns_to_zero(&mut r, before, &label);
}

fn flush_returns_to_zero(r: &mut Run, before: (isize, isize), label: &str) {
    if Run::has("flushall") {
        r.cmd(vec![b"FLUSHALL".to_vec()]);
    } else {
        r.eng.load_dbs(Vec::new());
    }
    let left = grown(before).0;
    println!("{:<28} after FLUSHALL: used_memory {}  heap {}", label, r.eng.used_memory(), left);
    assert!(r.eng.used_memory() < 1024, "{}: used_memory {} after FLUSHALL", label, r.eng.used_memory());
    assert!(left < 64 * 1024, "{}: {} bytes still held after FLUSHALL", label, left);
}

#[test]
fn used_memory_tracks_the_real_heap() {
    // Strings: short text values, integer values, longer values, keys with TTLs.
    for (case, value, ttl) in [
        ("100k strings (16 B)", 16usize, false),
        ("100k strings (int)", 0, false),
        ("100k strings (100 B) + TTL", 100, true),
    ] {
        let mut r = Run::new();
        let before = heap();
        for i in 0..N {
            let key = format!("key:{:08}", i).into_bytes();
            let val = if value == 0 { i.to_string().into_bytes() } else { vec![b'v'; value] };
            let mut args = vec![b"SET".to_vec(), key, val];
            if ttl {
                args.extend([b"EX".to_vec(), b"1000".to_vec()]);
            }
            r.cmd(args);
        }
        check(case, r.eng.used_memory(), grown(before));
        flush_returns_to_zero(&mut r, before, case);
    }

    let elem = |j: usize| format!("element:{:08}", j).into_bytes();
    container(
        "100k-element list",
        "rpush",
        |j| vec![elem(j)],
        || {
            let mut l = List::new();
            for j in 0..N {
                l.push_back(blob(&elem(j)));
            }
            Value::List(Box::new(l))
        },
    );
    container(
        "100k-field hash",
        "hset",
        |j| vec![elem(j), b"value-of-the-field".to_vec()],
        || {
            let mut h = Hash::new();
            for j in 0..N {
                h.insert(&elem(j), blob(b"value-of-the-field"));
            }
            Value::Hash(Box::new(h))
        },
    );
    container(
        "100k-member set",
        "sadd",
        |j| vec![elem(j)],
        || {
            let mut s = Set::new();
            for j in 0..N {
                s.insert(&elem(j));
            }
            Value::Set(Box::new(s))
        },
    );
    container(
        "100k-member sorted set",
        "zadd",
        |j| vec![(j % 977).to_string().into_bytes(), elem(j)],
        || {
            let mut z = SortedSet::new();
            for j in 0..N {
                z.insert(&elem(j), (j % 977) as f64);
            }
            Value::ZSet(Box::new(z))
        },
    );
}

//! A fuzz driver for stable Rust with no libFuzzer: runs targets over their seeds and
//! corpus and over random mutations of them for a fixed time, and fails on the first panic
//! (or on an allocation larger than the limit), saving the input that caused it.
//!
//! ```text
//! fuzz-smoke <target|all> [--seconds N] [--seed N] [--corpus DIR] [--artifacts DIR]
//! fuzz-smoke <target> --replay FILE...
//! fuzz-smoke all --write-seeds DIR      # DIR/<target>/seed-N, a starting corpus for libFuzzer
//! ```
//!
//! It has no coverage feedback, so it is a smoke test rather than a fuzzer: it keeps a pool
//! of inputs (seeds, corpus files from `cargo fuzz` runs, and a random sample of what it
//! generated) and mutates them the way libFuzzer does (bit flips, interesting bytes and
//! numbers, insertions, deletions, duplications, splices, dictionary words).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use recached_fuzz_targets::{run, seeds, TARGETS};

/// Largest single allocation allowed: libFuzzer's default `-malloc_limit_mb` (2 GB) would
/// make a declared-length bug swap the machine before failing; 1 GB is beyond any
/// legitimate need of these targets (a 512 MB string is Redis's maximum).
const MALLOC_LIMIT: usize = 1 << 30;

/// The input being run, so the allocator can save it before aborting.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static ARTIFACT: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());

struct Limited;

unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        check(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        check(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        check(new);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Limited = Limited;

fn check(size: usize) {
    if size <= MALLOC_LIMIT {
        return;
    }
    // Unwinding out of an allocator is undefined behaviour: save the input and abort.
    let ptr = CURRENT.load(Relaxed);
    let len = CURRENT_LEN.load(Relaxed);
    let art = ARTIFACT.load(Relaxed);
    let mut err = std::io::stderr();
    let _ = writeln!(err, "fuzz-smoke: allocation of {} bytes exceeds the {} byte limit", size, MALLOC_LIMIT);
    if !ptr.is_null() && !art.is_null() {
        // SAFETY: set by `run_one` to the live input for the duration of the run.
        let data = unsafe { std::slice::from_raw_parts(ptr, len) };
        let path = unsafe { &*art };
        let _ = std::fs::write(path, data);
        let _ = writeln!(err, "fuzz-smoke: input saved to {}", path);
    }
    std::process::abort();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const DICT: &[&[u8]] = &[
    b"\r\n", b"*", b"$", b"+", b"-", b":", b"%", b"~", b">", b",", b"#", b"_", b"(", b"=", b"!", b"-1", b"0", b"1",
    b"2147483647", b"2147483648", b"4294967296", b"9223372036854775807", b"-9223372036854775808",
    b"18446744073709551615", b"536870912", b"65536", b"\"", b"'", b"\\x", b" ", b"\n", b"\x00", b"\xff",
    b"RCSNAP", b"inf", b"nan",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = [0, 1, 0x7F, 0x80, 0xFF, b'\r', b'\n', b'0', b'9', b'-'][rng.below(10)];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let w = DICT[rng.below(DICT.len())];
                input.splice(i..i, w.iter().copied());
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            6 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            7 if len > 0 => input.truncate(rng.below(len)),
            8 => {
                // An ASCII number, where lengths live.
                let i = rng.below(len + 1);
                let n = [0i64, -1, 1, 7, 64, 255, 256, 1 << 20, i32::MAX as i64, i64::MAX][rng.below(10)];
                input.splice(i..i, n.to_string().into_bytes());
            }
            9 => {
                let i = rng.below(len + 1);
                let b = rng.next() as u8;
                input.insert(i, b);
            }
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                input.swap(a, b);
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(1 << 16);
}

fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Runs one input; on panic saves it and returns the panic message.
fn run_one(target: &str, data: &[u8], artifact: &str) -> Result<(), String> {
    CURRENT.store(data.as_ptr() as *mut u8, Relaxed);
    CURRENT_LEN.store(data.len(), Relaxed);
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(target, data)));
    CURRENT.store(std::ptr::null_mut(), Relaxed);
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let _ = std::fs::write(artifact, data);
            Err(msg)
        }
    }
}

fn fuzz(target: &str, seconds: u64, seed: u64, corpus: &Path, artifacts: &Path) -> bool {
    let _ = std::fs::create_dir_all(artifacts.join(target));
    let artifact = artifacts.join(target).join("crash-smoke").display().to_string();
    // Leaked on purpose: the allocator reads it until the process ends.
    ARTIFACT.store(Box::into_raw(Box::new(artifact.clone())), Relaxed);
    let mut pool = seeds(target);
    pool.extend(read_dir(&corpus.join(target)));
    pool.push(Vec::new());
    let mut rng = Rng(seed ^ target.len() as u64 * 0x1234_5678);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut runs = 0u64;
    for input in pool.clone() {
        if let Err(msg) = run_one(target, &input, &artifact) {
            report(target, &msg, &artifact, &input);
            return false;
        }
        runs += 1;
    }
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = if rng.below(20) == 0 {
                (0..rng.below(256)).map(|_| rng.next() as u8).collect()
            } else {
                pool[rng.below(pool.len())].clone()
            };
            mutate(&mut rng, &mut input, &pool);
            if let Err(msg) = run_one(target, &input, &artifact) {
                report(target, &msg, &artifact, &input);
                return false;
            }
            runs += 1;
            // No coverage signal: keep a random sample so mutations compound.
            if rng.below(50) == 0 {
                if pool.len() < 4096 {
                    pool.push(input);
                } else {
                    let i = rng.below(pool.len());
                    pool[i] = input;
                }
            }
        }
    }
    println!("fuzz-smoke: {:<16} {:>9} runs in {:.1}s, no failure (seed {})", target, runs, start.elapsed().as_secs_f64(), seed);
    true
}

fn report(target: &str, msg: &str, artifact: &str, input: &[u8]) {
    eprintln!("fuzz-smoke: {} FAILED: {}", target, msg);
    eprintln!("fuzz-smoke: input ({} bytes) saved to {}", input.len(), artifact);
    eprintln!("fuzz-smoke: replay with: cargo run --release -p recached-fuzz-targets --bin fuzz-smoke -- {} --replay {}", target, artifact);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(which) = args.first().cloned() else {
        eprintln!("usage: fuzz-smoke <{}|all> [--seconds N] [--seed N] [--corpus DIR] [--artifacts DIR] | <target> --replay FILE...", TARGETS.join("|"));
        std::process::exit(2);
    };
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(dir) = opt("--write-seeds") {
        for t in TARGETS {
            let d = Path::new(&dir).join(t);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {}", d.display(), e));
            for (i, s) in seeds(t).iter().enumerate() {
                std::fs::write(d.join(format!("seed-{}", i)), s).unwrap_or_else(|e| panic!("{}: {}", d.display(), e));
            }
        }
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--replay") {
        // Replays let the panic surface with its backtrace.
        for file in &args[i + 1..] {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {}", file, e));
            run(&which, &data);
            println!("{}: ok", file);
        }
        return;
    }
    panic::set_hook(Box::new(|info| {
        // One line per panic: the message is reported with the saved input.
        let _ = info;
    }));
    let seconds = opt("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed = opt("--seed").and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let corpus = opt("--corpus").map(PathBuf::from).unwrap_or_else(|| here.join("corpus"));
    let artifacts = opt("--artifacts").map(PathBuf::from).unwrap_or_else(|| here.join("artifacts"));
    let targets: Vec<&str> = if which == "all" { TARGETS.to_vec() } else { vec![which.as_str()] };
    let mut ok = true;
    for t in targets {
        if !TARGETS.contains(&t) {
            eprintln!("unknown target {}", t);
            std::process::exit(2);
        }
        ok &= fuzz(t, seconds, seed, &corpus, &artifacts);
    }
    if !ok {
        std::process::exit(1);
    }
}

//! `recached`: parse the configuration, start tracing, run the hub until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use recached_hub::{Args, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the hub allocates per command (arguments, change
/// records, replies) and glibc's malloc/free were ~17% of its CPU in pipelined SET
/// (perf, docs/benchmarks.md); Redis ships jemalloc for the same reason.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Return freed memory to the OS at once instead of after mimalloc's default 10 ms
/// delay (×10 for arenas): with the delay, the RSS after a bulk load still held the
/// keyspace's outgrown tables (1M keys: 172 instead of 95 bytes/key), and RSS is what
/// `maxmemory` users and the benchmark compare.
fn tune_allocator() {
    // SAFETY: a plain option store, made before the runtime or any other thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

fn main() -> ExitCode {
    tune_allocator();
    let args = Args::parse();
    if let Some(path) = &args.check_aof {
        return ExitCode::from(recached_hub::persist::aof::check(path, args.fix));
    }
    let settings = match Settings::from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("recached: configuration error: {}", e);
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings.loglevel);
    let shown: Vec<String> = settings.masked().into_iter().map(|(k, v)| format!("{}={:?}", k, v)).collect();
    tracing::info!(config = %shown.join(" "), "effective configuration");
    if settings.requirepass.is_empty() {
        tracing::warn!("no requirepass set: any local client may connect");
    }
    // One engine behind one lock: a single-threaded runtime (as Redis) avoids lock
    // handoffs between workers; `io-threads` > 1 spreads socket work over more threads.
    let mut builder = if settings.io_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(settings.io_threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("recached: cannot start the runtime: {}", e);
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(recached_hub::run(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e, "cannot start");
            eprintln!("recached: {}", e);
            ExitCode::from(1)
        }
    }
}

/// Maps Redis's log levels onto tracing's; `RUST_LOG` wins when set.
fn init_tracing(loglevel: &str) {
    let level = match loglevel {
        "trace" => "trace",
        "debug" => "debug",
        "verbose" | "info" | "notice" => "info",
        "warning" | "warn" => "warn",
        "error" => "error",
        "nothing" => "off",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).with_target(false).init();
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

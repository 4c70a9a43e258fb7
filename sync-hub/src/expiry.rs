//! Active expiry: a task that sleeps until the engine's next deadline, sweeps what is due
//! under the lock, and processes the resulting `DEL`s like a batch (so change sinks,
//! keyspace notifications and blocked clients see them). A batch that creates an earlier
//! deadline wakes it early (see `Core::after_batch`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::hub::{now_ms, Shared};

/// Keys removed per lock acquisition; the task yields between rounds when more are due.
const SWEEP_BUDGET: usize = 512;
/// Longest sleep, so a wrong clock step is noticed eventually.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs until shutdown.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (next, behind) = {
            let mut core = shared.lock_when_idle().await;
            let now = now_ms();
            // A replica's keys expire when the primary's DEL arrives, never here.
            let next = if core.hub.repl.is_replica() { None } else { core.engine.sweep(now, SWEEP_BUDGET) };
            core.after_batch(&shared, now);
            core.hub.expiry_at = next;
            (next, next.is_some_and(|d| d <= now))
        };
        if behind {
            // More keys are already due: let clients have the lock, then continue.
            tokio::task::yield_now().await;
            continue;
        }
        let wait = match next {
            Some(d) => Duration::from_millis(d.saturating_sub(now_ms())).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.expiry_wake.notified() => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
    }
}

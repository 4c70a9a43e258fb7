//! Live sync across a hub restart (persistence): the stream id, the offset and the write
//! dedupe memory are saved with the data, so after a restart
//! - a client that was behind resumes with `continue` (the AOF's recent groups refill the
//!   backlog, and the new stream continues the saved one as PSYNC2's secondary id does);
//! - a client that was current resumes with `continue` after a snapshot-only restart;
//! - writes whose acks were lost with the old process, resent to the new one, apply once.

mod sync_support;

use std::time::Duration;

use sync_support::client::{ClientOpts, TestClient};
use sync_support::state::{diff, read_hub, visible_part};
use sync_support::{b, int, now_ms, Backend, Hub, HubOpts, IO_TIMEOUT};

async fn assert_converged(c: &TestClient, be: &mut Backend, patterns: &[&str]) {
    let hub = read_hub(be).await;
    let want = visible_part(&hub, patterns, &["*"]);
    let mut last = Vec::new();
    let ok = sync_support::eventually(Duration::from_secs(10), || {
        last = diff(&want, &c.state(), now_ms(), 0);
        last.is_empty()
    })
    .await;
    assert!(ok, "client diverged:\n{}\n{}", last.join("\n"), c.describe());
}

fn data_dir(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("recached-sync-persist-{}-{}-{}", name, std::process::id(), now_ms()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.display().to_string()
}

async fn wait_for(be: &mut Backend, key: &str, want: i64, c: &TestClient) {
    let mut got = None;
    for _ in 0..500 {
        got = int(&be.cmd(&[b("GET"), b(key)]).await);
        if got == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} is {got:?}, want {want}\n{}", c.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_restart_resumes_with_continue_and_applies_resent_writes_once() {
    let dir = data_dir("aof");
    let opts = HubOpts::new().flag("appendonly", "yes").flag("appendfsync", "always").flag("dir", &dir);
    let Some(mut hub) = Hub::start_native_or_skip("aof_restart_resumes_with_continue", opts) else { return };
    let mut be = hub.backend().await;
    for i in 0..50 {
        be.cmd(&[b("SET"), b(&format!("p:s{i}")), b("before")]).await;
    }
    let tok = hub.token("paula", &["p:*"], &["p:*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("persist-1", &tok, &["p:*"])).await;
    assert_converged(&c, &mut be, &["p:*"]).await;
    assert_eq!(c.st().sub_modes, vec!["full".to_string()]);

    // Behind: the client goes away, the hub moves on, the client writes offline; then the
    // hub is killed and comes back from its AOF.
    c.drop_link();
    for i in 0..20 {
        be.cmd(&[b("RPUSH"), b("p:l"), b(&format!("while-away-{i}"))]).await;
    }
    assert!(c.run(&["INCRBY", "p:n", "5"]).seq.is_some());
    hub.restart(true);
    let mut be = hub.backend().await;
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    {
        let d = c.describe();
        let st = c.st();
        assert_eq!(st.sub_modes.last().map(String::as_str), Some("continue"), "resume after a restart: {d}");
        assert_eq!(st.c.stats().full_syncs, 1, "no second full sync: {d}");
    }
    assert_converged(&c, &mut be, &["p:*"]).await;
    assert_eq!(int(&be.cmd(&[b("GET"), b("p:n")]).await), Some(5), "the offline write applied once");

    // Acks lost with the process: the hub ran the writes (and fsynced them), then died
    // before the client read the acks; the client resends them to the new process.
    c.stop_reading();
    let seqs: Vec<u64> = (0..4).map(|_| c.run(&["INCRBY", "p:n", "10"]).seq.expect("queued")).collect();
    wait_for(&mut be, "p:n", 45, &c).await;
    c.drop_link();
    hub.restart(true);
    let mut be = hub.backend().await;
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    assert_eq!(int(&be.cmd(&[b("GET"), b("p:n")]).await), Some(45), "resent writes ran again after the restart");
    {
        let st = c.st();
        assert!(st.c.stats().resent >= 4, "nothing was resent: {:?}", st.c.stats());
        for s in seqs {
            assert_eq!(st.settled.get(&s).map(|v| v.len()), Some(1), "seq {s} settled {:?}", st.settled.get(&s));
        }
    }
    assert_converged(&c, &mut be, &["p:*"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restart_continues_a_current_client() {
    let dir = data_dir("rdb");
    let opts = HubOpts::new().flag("save", "3600 1").flag("dir", &dir);
    let Some(mut hub) = Hub::start_native_or_skip("snapshot_restart_continues_a_current_client", opts) else { return };
    let mut be = hub.backend().await;
    for i in 0..30 {
        be.cmd(&[b("HSET"), b("q:h"), b(&format!("f{i}")), b("v")]).await;
    }
    let tok = hub.token("quinn", &["q:*"], &["q:*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("persist-2", &tok, &["q:*"])).await;
    assert_converged(&c, &mut be, &["q:*"]).await;
    drop(be);
    // SIGTERM saves the snapshot (save rules set); the client was current.
    c.drop_link();
    hub.restart(false);
    let mut be = hub.backend().await;
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    assert_eq!(c.st().sub_modes.last().map(String::as_str), Some("continue"), "{}", c.describe());
    be.cmd(&[b("HSET"), b("q:h"), b("after"), b("restart")]).await;
    assert_converged(&c, &mut be, &["q:*"]).await;
    // A client behind the snapshot's offset (nothing kept to replay) gets `full` and still
    // converges.
    c.drop_link();
    be.cmd(&[b("HSET"), b("q:h"), b("missed"), b("1")]).await;
    drop(be);
    hub.restart(false);
    let mut be = hub.backend().await;
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    assert_converged(&c, &mut be, &["q:*"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

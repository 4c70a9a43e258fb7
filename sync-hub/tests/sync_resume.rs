//! Resume after a disconnect, against a real hub:
//! - a short break resumes with `continue`: only the missed changes arrive, no snapshot
//!   (no `sync.snap`, no `sync.full`, the state machine counts no full sync), also for a
//!   client whose own keys were quiet while the stream moved on (`sync.at` heartbeats);
//! - a break longer than the backlog (a hub with a tiny `--sync-backlog-bytes`) gets
//!   `full`, and the client still converges; writes it made offline land exactly once;
//! - a write made `AS` an origin (a leader tab relaying a follower tab's write) and resent
//!   on another connection with another client id (the next leader) runs once.

mod sync_support;

use std::time::Duration;

use recached_engine::resp::Frame;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::raw::RawWs;
use sync_support::state::{diff, read_hub, visible_part};
use sync_support::{b, cmd, int, loud, now_ms, Backend, Hub, HubOpts, IO_TIMEOUT};

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

async fn fill(be: &mut Backend, prefix: &str, n: usize, tag: &str) {
    let mut cmds = Vec::new();
    for i in 0..n {
        cmds.push(vec![b("SET"), b(&format!("{prefix}:s{}", i % 20)), b(&format!("{tag}-{i}"))]);
        cmds.push(vec![b("HSET"), b(&format!("{prefix}:h")), b(&format!("f{}", i % 7)), b(&format!("{tag}-{i}"))]);
        cmds.push(vec![b("RPUSH"), b(&format!("{prefix}:l")), b(&format!("{tag}-{i}"))]);
    }
    for r in be.pipeline(&cmds).await {
        assert!(!matches!(r, Frame::Error(_)), "fill: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_disconnect_resumes_with_deltas_only() {
    let Some(hub) = Hub::start_or_skip("short_disconnect_resumes_with_deltas_only", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    fill(&mut be, "r", 30, "before").await;
    let tok = hub.token("alice", &["*"], &["*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("resume-short", &tok, &["r:*"])).await;
    assert_eq!(c.st().sub_modes, vec!["full".to_string()], "first SUB: {}", c.describe());
    assert_converged(&c, &mut be, &["r:*"]).await;
    let (snaps, fulls, stats) = {
        let st = c.st();
        (st.snap_pushes, st.full_pushes, st.c.stats().clone())
    };
    assert!(snaps > 0 && stats.full_syncs == 1);

    for round in 0..3 {
        // The network drops; the hub moves on; the client writes while offline.
        if round == 1 {
            c.close(1000).await;
        } else {
            c.drop_link();
        }
        fill(&mut be, "r", 15, &format!("offline-{round}")).await;
        be.cmd(&[b("DEL"), b("r:s3")]).await;
        be.cmd(&[b("SET"), b("other:x"), b("not mirrored")]).await;
        let s = c.run(&["INCRBY", "r:counter", "5"]);
        assert!(s.seq.is_some());
        c.connect().await;
        assert!(c.wait_settled(IO_TIMEOUT).await, "not settled: {}", c.describe());
        {
            let d = c.describe();
            let st = c.st();
            assert_eq!(st.sub_modes.last().map(String::as_str), Some("continue"), "round {round}: {d}");
            assert_eq!((st.snap_pushes, st.full_pushes), (snaps, fulls), "round {round}: a snapshot was sent on resume");
            assert_eq!(st.c.stats().full_syncs, stats.full_syncs, "round {round}");
            assert_eq!(st.c.stats().snapshot_keys, stats.snapshot_keys, "round {round}");
            assert_eq!(st.c.stats().continues, round + 1, "round {round}");
        }
        assert_converged(&c, &mut be, &["r:*"]).await;
    }
    assert_eq!(int(&be.cmd(&[b("GET"), b("r:counter")]).await), Some(15), "offline INCRBYs applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_subscriber_resumes_from_heartbeat() {
    // Its keys are quiet while the stream moves on by far more than the backlog holds;
    // `sync.at` keeps its resume point recent, so it still gets `continue`.
    let Some(hub) = Hub::start_or_skip("quiet_subscriber_resumes_from_heartbeat", HubOpts::new().backlog_bytes(16 * 1024)) else { return };
    let mut be = hub.backend().await;
    be.cmd(&[b("SET"), b("quiet:a"), b("1")]).await;
    let tok = hub.token("q", &["*"], &["*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("quiet", &tok, &["quiet:*"])).await;
    let start = c.st().c.resume_point().map(|(_, o)| o).unwrap_or(0);
    fill(&mut be, "noise", 200, "n").await;
    // Heartbeats come about once a second.
    let moved = sync_support::eventually(Duration::from_secs(5), || c.st().c.resume_point().is_some_and(|(_, o)| o > start + 100)).await;
    assert!(moved, "no sync.at heartbeat moved the resume point: {}", c.describe());
    c.drop_link();
    be.cmd(&[b("SET"), b("quiet:a"), b("2")]).await;
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    assert_eq!(c.st().sub_modes.last().map(String::as_str), Some("continue"), "{}", c.describe());
    assert_eq!(c.st().snap_pushes, 1, "only the first subscription had a snapshot");
    assert_converged(&c, &mut be, &["quiet:*"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_longer_than_backlog_falls_back_to_full() {
    let Some(hub) = Hub::start_or_skip("disconnect_longer_than_backlog_falls_back_to_full", HubOpts::new().backlog_bytes(4096)) else { return };
    let mut be = hub.backend().await;
    fill(&mut be, "r", 10, "before").await;
    let tok = hub.token("bob", &["*"], &["*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("resume-long", &tok, &["r:*"])).await;
    assert_converged(&c, &mut be, &["r:*"]).await;
    c.drop_link();
    // Far more than 4 KiB of changes to the client's keys.
    fill(&mut be, "r", 200, "while-away-with-a-longer-value-so-the-backlog-overflows").await;
    be.cmd(&[b("DEL"), b("r:s1"), b("r:s2")]).await;
    for _ in 0..7 {
        assert!(c.run(&["INCRBY", "r:counter", "3"]).seq.is_some());
    }
    assert!(c.run(&["RPUSH", "r:mine", "offline"]).seq.is_some());
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    {
        let d = c.describe();
        let st = c.st();
        assert_eq!(st.sub_modes.last().map(String::as_str), Some("full"), "{d}");
        assert_eq!(st.c.stats().full_syncs, 2);
        assert!(st.snap_pushes >= 2, "the second full sync sent no snapshot");
    }
    assert_converged(&c, &mut be, &["r:*"]).await;
    assert_eq!(int(&be.cmd(&[b("GET"), b("r:counter")]).await), Some(21), "offline INCRBYs applied exactly once");
    assert_eq!(int(&be.cmd(&[b("LLEN"), b("r:mine")]).await), Some(1), "offline RPUSH applied exactly once");
    // And live again afterwards.
    be.cmd(&[b("SET"), b("r:after"), b("live")]).await;
    assert_converged(&c, &mut be, &["r:*"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_writes_whose_acks_were_lost_apply_once() {
    // The hub runs the writes, the acks are lost with the link, the client resends them on
    // reconnect (same seqs): the hub must answer from its dedupe memory, not run them again.
    let Some(hub) = Hub::start_or_skip("resent_writes_whose_acks_were_lost_apply_once", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    let tok = hub.token("carol", &["*"], &["*"], 3_600_000);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("lost-acks", &tok, &["d:*"])).await;
    for round in 1..=3i64 {
        c.stop_reading();
        let seqs: Vec<u64> = (0..5)
            .map(|i| c.run(&["INCRBY", "d:n", "10"]).seq.unwrap_or_else(|| panic!("write {i} not queued")))
            .chain([c.transaction(&[vec![b("RPUSH"), b("d:l"), b(&format!("r{round}"))], vec![b("INCR"), b("d:n")]]).seq.expect("tx queued")])
            .collect();
        // Wait until the hub has run all of them.
        let want = round * 51;
        let mut got = None;
        for _ in 0..500 {
            got = int(&be.cmd(&[b("GET"), b("d:n")]).await);
            if got == Some(want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(got, Some(want), "round {round}: the hub did not run the writes");
        // The acks sit unread in the socket: drop it.
        c.drop_link();
        assert_eq!(c.pending(), 6, "round {round}: the writes should still be pending");
        c.connect().await;
        assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
        assert_eq!(int(&be.cmd(&[b("GET"), b("d:n")]).await), Some(want), "round {round}: resent writes ran again");
        assert_eq!(int(&be.cmd(&[b("LLEN"), b("d:l")]).await), Some(round), "round {round}: resent transaction ran again");
        let st = c.st();
        assert!(st.c.stats().resent >= 6, "round {round}: nothing was resent: {:?}", st.c.stats());
        for s in seqs {
            assert_eq!(st.settled.get(&s).map(|v| v.len()), Some(1), "round {round}: seq {s} settled {:?}", st.settled.get(&s));
        }
    }
    assert_converged(&c, &mut be, &["d:*"]).await;
}

/// The ack of the next write on a raw connection: (seq, reply).
async fn raw_ack(ws: &mut RawWs) -> (i64, Frame) {
    match ws.reply(IO_TIMEOUT).await {
        Ok(Frame::Array(items)) if items.len() == 4 => (int(&items[0]).unwrap_or(-1), items[2].clone()),
        other => panic!("not an ack: {other:?}"),
    }
}

/// Issue 5 (cross-tab exactly-once): a leader tab runs a follower's write through its
/// connection as `SYNC.W AS <origin> <seq>` and closes before the ack arrives; the next
/// leader resends it on its own connection, with its own client id. The hub must answer
/// from its dedupe memory under (subject, origin), not run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_write_resent_by_another_connection_applies_once() {
    let Some(hub) = Hub::start_or_skip("as_write_resent_by_another_connection_applies_once", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    let tok = hub.token("frank", &["as:*"], &["as:*"], 3_600_000);
    let mut old = RawWs::connect(&hub.ws_url).await;
    assert!(matches!(old.hello(&tok, "old-leader").await, Ok(Frame::Map(_))));
    old.send_cmds(&[cmd(&["SYNC.W", "AS", "tab-f", "1", "INCR", "as:k"]), cmd(&["SYNC.TX", "AS", "tab-f", "2", "2", "2", "INCR", "as:k", "3", "RPUSH", "as:l", "x"])])
        .await
        .expect("send");
    // Wait until the hub ran both, then drop the socket with the acks unread.
    let mut got = None;
    for _ in 0..500 {
        got = int(&be.cmd(&["GET", "as:k"]).await);
        if got == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, Some(2), "the hub did not run the writes");
    drop(old);

    let mut new = RawWs::connect(&hub.ws_url).await;
    assert!(matches!(new.hello(&tok, "new-leader").await, Ok(Frame::Map(_))));
    new.send_cmds(&[
        cmd(&["SYNC.W", "AS", "tab-f", "1", "INCR", "as:k"]),
        cmd(&["SYNC.TX", "AS", "tab-f", "2", "2", "2", "INCR", "as:k", "3", "RPUSH", "as:l", "x"]),
        // Equal seqs of another origin and of the connection itself are other writes.
        cmd(&["SYNC.W", "AS", "tab-g", "1", "INCR", "as:k"]),
        cmd(&["SYNC.W", "1", "INCR", "as:k"]),
    ])
    .await
    .expect("send");
    assert_eq!(raw_ack(&mut new).await, (1, Frame::Int(1)), "the resend answers the first run's reply");
    assert_eq!(raw_ack(&mut new).await, (2, Frame::Array(vec![Frame::Int(2), Frame::Int(1)])));
    assert_eq!(raw_ack(&mut new).await, (1, Frame::Int(3)));
    assert_eq!(raw_ack(&mut new).await, (1, Frame::Int(4)));
    assert_eq!(int(&be.cmd(&["GET", "as:k"]).await), Some(4), "the resent INCRs ran again");
    assert_eq!(int(&be.cmd(&["LLEN", "as:l"]).await), Some(1), "the resent transaction ran again");
    // Scope applies to AS writes as to any other.
    new.send_cmds(&[cmd(&["SYNC.W", "AS", "tab-f", "3", "SET", "other", "x"])]).await.expect("send");
    match new.reply(IO_TIMEOUT).await {
        Ok(Frame::Array(items)) => assert!(matches!(&items[2], Frame::Error(e) if e.starts_with(b"NOPERM")), "{items:?}"),
        other => panic!("{other:?}"),
    }
    if let Some(dups) = hub.metric("recached_sync_duplicate_writes_total").await {
        assert_eq!(dups, 2.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapdb_and_flush_resync_live_clients() {
    // SWAPDB involving database 0 cannot be sent as changes: live subscribers get an
    // in-band `sync.full`; FLUSHDB / FLUSHALL are pushed as changes.
    let Some(hub) = Hub::start_or_skip("swapdb_and_flush_resync_live_clients", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    if recached_engine::lookup(b"swapdb").is_none() {
        return;
    }
    fill(&mut be, "w", 10, "db0").await;
    let tok = hub.token("dave", &["*"], &["*"], 3_600_000);
    let c = TestClient::live(&hub.ws_url, ClientOpts::new("swapper", &tok, &["w:*"])).await;
    if hub.tcp_port.is_none() {
        // SELECT and SWAPDB exist only on a RESP connection (a sync connection and the HTTP
        // API always use database 0), so a hub without one (the edge hub) cannot swap.
        loud("\n*** swapdb_and_flush_resync_live_clients: no RESP port on this hub: the SWAPDB part is SKIPPED (FLUSHDB/FLUSHALL still checked) ***\n");
    } else {
        for cmds in [
            vec![cmd(&["SELECT", "1"]), cmd(&["SET", "w:in-db1", "one"]), cmd(&["RPUSH", "w:l", "db1"]), cmd(&["SELECT", "0"])],
            vec![cmd(&["SWAPDB", "0", "1"])],
            vec![cmd(&["SET", "w:after-swap", "x"])],
        ] {
            for r in be.pipeline(&cmds).await {
                assert!(!matches!(r, Frame::Error(_)), "{r:?}");
            }
        }
        assert_converged(&c, &mut be, &["w:*"]).await;
        assert!(c.st().full_pushes >= 1, "no in-band sync.full after SWAPDB: {}", c.describe());
        assert_eq!(c.run(&["GET", "w:in-db1"]).reply, recached_engine::Reply::bulk("one"));
    }
    be.cmd(&["FLUSHDB"]).await;
    be.cmd(&["SET", "w:after-flush", "y"]).await;
    assert_converged(&c, &mut be, &["w:*"]).await;
    assert_eq!(c.state().len(), 1, "{:?}", c.state());
    be.cmd(&["FLUSHALL"]).await;
    assert_converged(&c, &mut be, &["w:*"]).await;
    assert!(c.state().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_replaced_and_the_client_resumes() {
    let Some(hub) = Hub::start_or_skip("expired_token_is_replaced_and_the_client_resumes", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    be.cmd(&["SET", "t:a", "1"]).await;
    let short = hub.token("erin", &["t:*"], &["t:*"], 1500);
    let mut c = TestClient::live(&hub.ws_url, ClientOpts::new("erin-tab", &short, &["t:*"])).await;
    assert_eq!(c.wait_closed(Duration::from_secs(6)).await, Some(4003), "{}", c.describe());
    assert_eq!(c.st().advice, Some(recached_engine::sync::client::Reconnect::NewToken));
    // Offline meanwhile: the hub moves on and the client writes.
    be.cmd(&["SET", "t:b", "2"]).await;
    assert!(c.run(&["INCR", "t:n"]).seq.is_some());
    c.st().c.set_token(hub.token("erin", &["t:*"], &["t:*"], 3_600_000));
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    assert_eq!(c.st().sub_modes.last().map(String::as_str), Some("continue"), "{}", c.describe());
    assert_converged(&c, &mut be, &["t:*"]).await;
    assert_eq!(int(&be.cmd(&["GET", "t:n"]).await), Some(1));
}

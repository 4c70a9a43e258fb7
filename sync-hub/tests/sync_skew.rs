//! Clock skew, against a real hub: clients whose clocks are an hour fast, an hour slow, or
//! right see every key expire within 100 ms of the hub's deadline — both in their reads
//! (a key is still there shortly before the deadline and gone shortly after) and in the
//! change notifications their timer raises — for expiries set by a backend and by a
//! skewed client itself.

mod sync_support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use recached_engine::sync::client::Event;
use recached_engine::Reply;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::{b, int, loud, now_ms, Hub, HubOpts, IO_TIMEOUT};

const TOLERANCE_MS: i64 = 100;
/// How late this test's own reads and the clients' timers may run on a loaded machine
/// (regression: the test failed once in a debug build under load, with the expiry right
/// but the observing loop late).
const LOAD_SLACK_MS: i64 = 1500;
const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clients_expire_keys_on_the_hub_deadline() {
    let Some(hub) = Hub::start_or_skip("skewed_clients_expire_keys_on_the_hub_deadline", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    let tok = hub.token("skew", &["*"], &["*"], 3_600_000 * 4);
    let mut clients = Vec::new();
    for (name, skew) in [("fast", HOUR), ("slow", -HOUR), ("right", 0), ("fast-a-bit", 1234)] {
        let c = TestClient::live(&hub.ws_url, ClientOpts::new(name, &tok, &["ttl:*"]).skew(skew)).await;
        let measured = c.st().c.clock_offset_ms();
        assert!((measured + skew).abs() <= 50, "{name}: clock offset measured {measured} ms for a skew of {skew} ms");
        clients.push((name, skew, c));
    }

    // Deadlines set by the backend (absolute, hub clock) and by a skewed client (relative:
    // the hub turns it into its own absolute time).
    let t0 = now_ms();
    let mut deadlines: HashMap<Bytes, i64> = HashMap::new();
    for i in 0..6u64 {
        let at = t0 + 600 + i * 150;
        be.cmd(&[b("SET"), b(&format!("ttl:b{i}")), b("v"), b("PXAT"), b(&at.to_string())]).await;
    }
    let w = clients[0].2.run(&["SET", "ttl:from-fast-client", "v", "PX", "900"]);
    assert!(w.seq.is_some());
    let w = clients[1].2.run(&["SET", "ttl:from-slow-client", "v", "PX", "1000"]);
    assert!(w.seq.is_some());
    for (_, _, c) in &clients {
        assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    }
    for k in ["ttl:b0", "ttl:b1", "ttl:b2", "ttl:b3", "ttl:b4", "ttl:b5", "ttl:from-fast-client", "ttl:from-slow-client"] {
        let at = int(&be.cmd(&[b("PEXPIRETIME"), b(k)]).await).unwrap_or(-1);
        assert!(at > now_ms() as i64, "{k} has no future deadline on the hub: {at}");
        deadlines.insert(b(k), at);
    }

    // Exact: every client holds each deadline as the hub's absolute time (it reads its
    // clock through the offset checked above, so it expires the key when the hub does).
    for (name, skew, c) in &clients {
        for (k, &d) in &deadlines {
            let held = c.exec(&[b("PEXPIRETIME"), k.clone()]).reply;
            assert_eq!(held, Reply::Int(d), "{name} (skew {skew}): {k:?} deadline");
        }
    }

    // Live: watch every client's reads every 2 ms until everything is gone.
    let mut first_gone: HashMap<(usize, Bytes), i64> = HashMap::new();
    let mut last_seen: HashMap<(usize, Bytes), i64> = HashMap::new();
    let end = *deadlines.values().max().unwrap_or(&0) + 500;
    while (now_ms() as i64) < end {
        for (ci, (_, _, c)) in clients.iter().enumerate() {
            for k in deadlines.keys() {
                let t = now_ms() as i64;
                let r = c.exec(&[b("EXISTS"), k.clone()]).reply;
                match r {
                    Reply::Int(1) => {
                        last_seen.insert((ci, k.clone()), t);
                    }
                    Reply::Int(0) => {
                        first_gone.entry((ci, k.clone())).or_insert(t);
                    }
                    other => panic!("EXISTS → {other:?}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // What the reads prove does not depend on how often they ran: a key seen after the
    // deadline (+ tolerance) expired late, one gone before it (- tolerance) early. How close
    // the observations came to the deadline does: on a loaded machine this loop and the
    // clients' timers run late, so that part has a loose bound (the reads must still have
    // bracketed the deadline) and reports the worst.
    let mut worst = 0i64;
    for (ci, (name, skew, c)) in clients.iter().enumerate() {
        let st = c.st();
        for (k, &d) in &deadlines {
            let gone = *first_gone.get(&(ci, k.clone())).unwrap_or_else(|| panic!("{name}: {k:?} never expired"));
            let seen = *last_seen.get(&(ci, k.clone())).unwrap_or_else(|| panic!("{name}: {k:?} never seen"));
            assert!(seen <= d + TOLERANCE_MS, "{name} (skew {skew}): {k:?} still there {} ms after the hub's deadline", seen - d);
            assert!(gone >= d - TOLERANCE_MS, "{name} (skew {skew}): {k:?} expired {} ms early", d - gone);
            assert!(seen >= d - LOAD_SLACK_MS && gone <= d + LOAD_SLACK_MS, "{name}: {k:?} was read too rarely to tell (last seen {} ms, first gone {} ms from the deadline)", seen - d, gone - d);
            // Notification: the client's own timer reported the key changed near the deadline.
            let note = st.events.iter().find(|(t, e)| matches!(e, Event::Changed(keys) if keys.contains(k)) && (*t as i64) >= d - 300).map(|(t, _)| *t as i64);
            if note.is_none() {
                for (t, e) in st.events.iter() {
                    eprintln!("  {name} event at deadline{:+} ms: {e:?}", *t as i64 - d);
                }
            }
            let note = note.unwrap_or_else(|| panic!("{name}: no change event for {k:?} around its deadline"));
            assert!(note >= d - TOLERANCE_MS, "{name} (skew {skew}): change event for {k:?} {} ms before the hub's deadline", d - note);
            assert!(note <= d + LOAD_SLACK_MS, "{name} (skew {skew}): change event for {k:?} {} ms after the hub's deadline", note - d);
            worst = worst.max((gone - d).abs()).max((note - d).abs());
        }
    }
    loud(&format!("clock skew: worst observed distance from the hub's deadline {worst} ms (expiry bound {TOLERANCE_MS} ms, observation slack {LOAD_SLACK_MS} ms)"));
}

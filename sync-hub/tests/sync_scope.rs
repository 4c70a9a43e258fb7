//! Scopes, against a real hub: a client whose token reads `user:1:*` never receives any
//! other key — not in its snapshot, not in changes, not in replies, not through RENAME,
//! MOVE, SMOVE or LMOVE (a key leaving its scope arrives as a deletion) — and its writes
//! outside the write scope are refused (by the hub when the client did not know its grant
//! yet, then rolled back on the client; locally once it knows it).
//!
//! Every out-of-scope key is named `user:2:…` or `other:…` and every out-of-scope value
//! contains `SECRET`; the client records every raw byte it receives and none of them may
//! contain those strings.

mod sync_support;

use std::time::Duration;

use recached_engine::resp::Frame;
use recached_engine::sync::client::Event;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::state::{diff, read_hub, visible_part};
use sync_support::{b, cmd, now_ms, show, Backend, Hub, HubOpts, IO_TIMEOUT};

const NOPERM_KEYS: &str = "NOPERM this user has no permissions to access one of the keys used as arguments";

fn is_noperm_keys(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.as_ref() == NOPERM_KEYS.as_bytes())
}

fn is_noperm_run(f: &Frame, name: &str) -> bool {
    let want = format!("NOPERM this user has no permissions to run the '{name}' command");
    matches!(f, Frame::Error(e) if e.as_ref() == want.as_bytes())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user1_never_sees_other_keys() {
    let Some(hub) = Hub::start_or_skip("user1_never_sees_other_keys", HubOpts::new()) else { return };
    let mut be = hub.backend().await;
    for c in [
        cmd(&["SET", "user:1:a", "mine"]),
        cmd(&["HSET", "user:1:h", "f", "v"]),
        cmd(&["SET", "user:1:m", "to be moved away"]),
        cmd(&["SET", "user:1:gone", "to be renamed away"]),
        cmd(&["RPUSH", "user:1:list", "x", "y"]),
        cmd(&["SADD", "user:2:set", "shared-member", "SECRET-member"]),
        cmd(&["SET", "user:2:secret", "SECRET-2"]),
        cmd(&["SET", "user:10:lookalike", "SECRET-10"]),
        cmd(&["SET", "other:x", "SECRET-other"]),
        cmd(&["SET", "other:in", "welcome"]),
    ] {
        let r = be.cmd(&c).await;
        assert!(!matches!(r, Frame::Error(_)), "{c:?}: {r:?}");
    }

    // Read user:1:*, write only user:1:w:*.
    let tok = hub.token("user-1", &["user:1:*"], &["user:1:w:*"], 3_600_000);
    let mut c = TestClient::new(&hub.ws_url, ClientOpts::new("scoped-1", &tok, &["user:1:*"]).record());
    // Before its first HELLO the client does not know its grant: these apply locally at
    // once and the hub must refuse them; then they roll back.
    let out_of_read = c.run(&["SET", "user:2:mine", "mine"]).seq.expect("queued");
    let read_only = c.run(&["SET", "user:1:a", "overwritten"]).seq.expect("queued");
    let allowed = c.run(&["SET", "user:1:w:ok", "yes"]).seq.expect("queued");
    assert_eq!(c.run(&["GET", "user:1:a"]).reply, recached_engine::Reply::bulk("overwritten"), "optimistic");
    c.connect().await;
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    {
        let st = c.st();
        for seq in [out_of_read, read_only] {
            match st.settled.get(&seq).map(|v| v.as_slice()) {
                Some([Err(e)]) => assert_eq!(e, NOPERM_KEYS, "seq {seq}"),
                other => panic!("write {seq} outside the write scope was not refused once: {other:?}"),
            }
        }
        assert!(matches!(st.settled.get(&allowed).map(|v| v.as_slice()), Some([Ok(_)])), "allowed write: {:?}", st.settled.get(&allowed));
        assert!(st.events.iter().any(|(_, e)| matches!(e, Event::Rejected { seq, .. } if *seq == read_only)));
    }
    // Rolled back: the hub's values, not the optimistic ones.
    assert_eq!(c.run(&["GET", "user:1:a"]).reply, recached_engine::Reply::bulk("mine"), "not rolled back");
    assert_eq!(c.run(&["EXISTS", "user:2:mine"]).reply, recached_engine::Reply::Int(0), "not rolled back");
    assert_eq!(show(&be.cmd(&cmd(&["EXISTS", "user:2:mine"])).await), ":0");

    // Now it knows its grant: refused locally, never sent.
    let r = c.run(&["SET", "other:y", "v"]);
    assert!(r.seq.is_none(), "sent a write outside its scope");
    assert_eq!(r.reply, recached_engine::Reply::err(NOPERM_KEYS));
    assert!(c.run(&["SET", "user:1:a", "again"]).seq.is_none(), "read-only key written");

    // Replies: every way of reading another key is refused with a NOPERM error.
    for (args, check) in [
        (cmd(&["GET", "user:2:secret"]), "keys"),
        (cmd(&["GET", "user:10:lookalike"]), "keys"),
        (cmd(&["MGET", "user:1:a", "other:x"]), "keys"),
        (cmd(&["EXISTS", "other:x"]), "keys"),
        (cmd(&["TYPE", "other:x"]), "keys"),
        (cmd(&["SMEMBERS", "user:2:set"]), "keys"),
        (cmd(&["SINTER", "user:1:set", "user:2:set"]), "keys"),
        (cmd(&["SUNIONSTORE", "user:1:w:u", "user:2:set"]), "keys"),
        (cmd(&["COPY", "other:x", "user:1:w:copy"]), "keys"),
        (cmd(&["RENAME", "user:1:w:ok", "other:z"]), "keys"),
        (cmd(&["SET", "user:2:secret", "x"]), "keys"),
        (cmd(&["KEYS", "*"]), "keys-cmd"),
        (cmd(&["SCAN", "0"]), "scan"),
        (cmd(&["RANDOMKEY"]), "randomkey"),
        (cmd(&["DBSIZE"]), "dbsize"),
        (cmd(&["SELECT", "1"]), "select"),
        (cmd(&["MOVE", "user:1:w:ok", "1"]), "move"),
        (cmd(&["FLUSHALL"]), "flushall"),
        (cmd(&["INFO"]), "info"),
    ] {
        if recached_engine::lookup(&args[0]).is_none() {
            continue;
        }
        let reply = c.remote(&args).await.unwrap_or_else(|| panic!("no reply to {args:?}: {}", c.describe()));
        let ok = match check {
            "keys" => is_noperm_keys(&reply),
            "keys-cmd" => is_noperm_run(&reply, "keys"),
            name => is_noperm_run(&reply, name),
        };
        assert!(ok, "{:?} → {} (want a NOPERM error)", args, show(&reply));
    }
    // A subscription beyond the read scope is refused.
    let mut wide = TestClient::new(&hub.ws_url, ClientOpts::new("scoped-wide", &tok, &["user:*"]));
    wide.connect().await;
    let refused = sync_support::eventually(IO_TIMEOUT, || wide.st().events.iter().any(|(_, e)| matches!(e, Event::SubscribeFailed(_)))).await;
    assert!(refused, "SUB user:* with a user:1:* token was not refused: {}", wide.describe());
    let ev = wide.st().events.iter().find_map(|(_, e)| if let Event::SubscribeFailed(s) = e { Some(s.clone()) } else { None });
    assert_eq!(ev.as_deref(), Some("NOPERM this user has no permissions to access one of the patterns used as arguments"));

    // Changes: keys leave and enter the scope through RENAME, MOVE, SMOVE, LMOVE, COPY.
    for c2 in [
        cmd(&["SET", "user:2:secret", "SECRET-2b"]),
        cmd(&["HSET", "user:1:h", "g", "w"]),
        cmd(&["RENAME", "user:1:gone", "other:gone"]),
        // MOVE needs a RESP backend (database 1); over a WebSocket backend the key leaves by DEL.
        if matches!(be, Backend::Tcp(_)) { cmd(&["MOVE", "user:1:m", "1"]) } else { cmd(&["DEL", "user:1:m"]) },
        cmd(&["RENAME", "other:in", "user:1:in"]),
        cmd(&["SMOVE", "user:2:set", "user:1:set", "shared-member"]),
        cmd(&["LMOVE", "user:1:list", "user:2:list", "LEFT", "RIGHT"]),
        cmd(&["COPY", "user:1:a", "user:2:copy"]),
        cmd(&["SET", "other:gone", "SECRET-after-rename"]),
        cmd(&["SADD", "user:2:set", "SECRET-later"]),
    ] {
        if recached_engine::lookup(&c2[0]).is_none() {
            continue;
        }
        let r = be.cmd(&c2).await;
        assert!(!matches!(r, Frame::Error(_)), "{c2:?}: {r:?}");
    }
    be.cmd(&cmd(&["SET", "user:1:done", "1"])).await;
    let hub_state = read_hub(&mut be).await;
    let want = visible_part(&hub_state, &["user:1:*"], &["user:1:*"]);
    let mut last = Vec::new();
    let ok = sync_support::eventually(Duration::from_secs(10), || {
        last = diff(&want, &c.state(), now_ms(), 0);
        last.is_empty()
    })
    .await;
    assert!(ok, "diverged:\n{}\n{}", last.join("\n"), c.describe());
    let state = c.state();
    assert!(!state.contains_key(&b("user:1:gone")) && !state.contains_key(&b("user:1:m")), "renamed/moved keys still visible");
    assert_eq!(state.get(&b("user:1:in")).map(|k| k.kind.as_str()), Some("string"), "renamed-in key missing");

    // Nothing outside the scope ever reached it, in any message.
    let st = c.st();
    let foreign: Vec<String> = st.received_keys.iter().filter(|k| !k.starts_with(b"user:1:")).map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert!(foreign.is_empty(), "received keys outside user:1:*: {foreign:?}");
    assert!(st.received_keys.iter().any(|k| k.as_ref() == b"user:1:gone"), "the rename away did not arrive as a deletion");
    for (i, m) in st.raw.iter().enumerate() {
        for needle in [&b"SECRET"[..], b"user:2", b"user:10", b"other:"] {
            assert!(!contains(m, needle), "message {i} contains {:?}: {:?}", String::from_utf8_lossy(needle), String::from_utf8_lossy(m));
        }
    }
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

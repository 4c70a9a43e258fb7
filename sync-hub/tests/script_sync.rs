//! A script's writes reach live-sync clients as one change group: a script run over RESP
//! that changes three keys arrives at a subscribed client as one `sync.change` push whose
//! change event names all three, never as a partial state.

mod sync_support;

use std::time::Duration;

use recached_engine::sync::client::Event;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::{b, Hub, HubOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_writes_arrive_as_one_group() {
    let Some(hub) =
        Hub::start_native_or_skip("a_scripts_writes_arrive_as_one_group", HubOpts::default())
    else {
        return;
    };
    let mut be = hub.backend().await;
    be.cmd(&[b("SET"), b("s:a"), b("0")]).await;
    let tok = hub.token("sam", &["s:*"], &[], 3_600_000);
    let c = TestClient::live(&hub.ws_url, ClientOpts::new("script-1", &tok, &["s:*"])).await;
    assert!(
        sync_support::eventually(Duration::from_secs(10), || c
            .state()
            .contains_key(&b"s:a"[..]))
        .await,
        "{}",
        c.describe()
    );
    let before = c.st().change_pushes;
    let script = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1]) redis.call('HSET', KEYS[3], 'f', ARGV[1]) return 3";
    for round in 1..=20 {
        let v = round.to_string();
        be.cmd(&[
            b("EVAL"),
            b(script),
            b("3"),
            b("s:a"),
            b("s:b"),
            b("s:c"),
            b(&v),
        ])
        .await;
    }
    let ok = sync_support::eventually(Duration::from_secs(10), || {
        c.st().change_pushes >= before + 20
    })
    .await;
    assert!(
        ok,
        "20 scripts, {} change pushes\n{}",
        c.st().change_pushes - before,
        c.describe()
    );
    let st = c.st();
    assert_eq!(st.change_pushes - before, 20, "one push per script");
    let changed: Vec<&Vec<bytes::Bytes>> = st
        .events
        .iter()
        .filter_map(|(_, e)| {
            if let Event::Changed(k) = e {
                Some(k)
            } else {
                None
            }
        })
        .collect();
    let last20 = &changed[changed.len().saturating_sub(20)..];
    for keys in last20 {
        let names: Vec<&[u8]> = keys.iter().map(|k| k.as_ref()).collect();
        assert_eq!(
            names,
            vec![&b"s:a"[..], b"s:b", b"s:c"],
            "every change event names the script's three keys"
        );
    }
}

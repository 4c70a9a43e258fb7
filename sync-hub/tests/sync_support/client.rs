//! A test sync client: the engine's real client state machine
//! (`recached_engine::sync::client::SyncClient`: bytes in, bytes out, time as an argument)
//! over tokio-tungstenite, with what the suites need on top:
//!
//! - a clock offset (`skew_ms`) added to every time it hands the state machine, to
//!   simulate a device whose clock is wrong;
//! - [`TestClient::stop_reading`] / [`TestClient::resume_reading`]: a slow consumer (with
//!   a small socket receive buffer the hub's outbound buffer fills quickly);
//! - [`TestClient::drop_link`] (the network drops: no close frame), [`TestClient::close`]
//!   (a clean close) and [`TestClient::connect`] (a reconnect that resumes);
//! - a record of everything it received (keys in snapshots, changes and acks; SUB modes;
//!   close codes; optionally every raw message) and of every settled write.
//!
//! One reader task per connection feeds messages to the state machine and also runs its
//! timer (`tick` at the next expiry deadline), as a browser host would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use recached_engine::resp::Frame;
use recached_engine::sync::client::{ClientConfig, ClientStats, Event, Reconnect, Status, Submitted, SyncClient};
use recached_engine::sync::message::{Ack, Push, SubMode, SubReply};
use recached_engine::Config;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::raw::{self, ConnectOpts, Ws};
use super::state::{self, State};
use super::{now_ms, IO_TIMEOUT};

/// How a test client is set up.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// The client id (kept across reconnects).
    pub client_id: String,
    /// The token.
    pub token: String,
    /// The patterns it mirrors.
    pub patterns: Vec<String>,
    /// Its clock minus the true clock, in ms.
    pub skew_ms: i64,
    /// Socket options.
    pub connect: ConnectOpts,
    /// Keep every raw message received (for scope checks).
    pub record: bool,
}

impl ClientOpts {
    /// A client with id `client_id`, `token`, mirroring `patterns`.
    pub fn new(client_id: &str, token: &str, patterns: &[&str]) -> ClientOpts {
        ClientOpts {
            client_id: client_id.to_string(),
            token: token.to_string(),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            skew_ms: 0,
            connect: ConnectOpts::default(),
            record: false,
        }
    }
    /// Sets the clock skew.
    pub fn skew(mut self, ms: i64) -> ClientOpts {
        self.skew_ms = ms;
        self
    }
    /// Keeps every raw message.
    pub fn record(mut self) -> ClientOpts {
        self.record = true;
        self
    }
    /// Sets the socket receive buffer.
    pub fn recv_buffer(mut self, bytes: u32) -> ClientOpts {
        self.connect.recv_buffer = Some(bytes);
        self
    }
}

/// Everything a test client knows; lock it with [`TestClient::st`].
pub struct St {
    /// The state machine.
    pub c: SyncClient,
    /// Clock skew in ms.
    pub skew: i64,
    /// Every event, with the true Unix ms it happened at.
    pub events: Vec<(u64, Event)>,
    /// Every raw message received (only when recording).
    pub raw: Vec<Bytes>,
    /// Every key received in a snapshot entry, a change or an ack's changes.
    pub received_keys: Vec<Bytes>,
    /// `sync.snap` pushes received.
    pub snap_pushes: u64,
    /// `sync.full` pushes received.
    pub full_pushes: u64,
    /// `sync.change` pushes received.
    pub change_pushes: u64,
    /// SUB replies' modes, in order (`continue` / `full`).
    pub sub_modes: Vec<String>,
    /// Closes (code, reason) sent by the hub, or 1006 when the link dropped.
    pub closes: Vec<(u16, String)>,
    /// Protocol errors the state machine reported.
    pub errors: Vec<String>,
    /// Outcomes of writes by seq (`Ok(reply)` / `Err(error)`); more than one is a bug.
    pub settled: HashMap<u64, Vec<Result<Frame, String>>>,
    /// What the state machine advised at the last close.
    pub advice: Option<Reconnect>,
    /// Whether a socket is open.
    pub connected: bool,
    /// Messages received.
    pub messages: u64,
    /// Bytes received.
    pub bytes: u64,
    record: bool,
    out: Option<mpsc::UnboundedSender<Message>>,
    generation: u64,
}

impl St {
    /// The client's local clock now (true time + skew).
    pub fn local_now(&self) -> u64 {
        (now_ms() as i64 + self.skew).max(0) as u64
    }

    /// Moves outgoing messages to the socket and events to the record.
    fn flush(&mut self) {
        while let Some(m) = self.c.take_outgoing() {
            if let Some(tx) = &self.out {
                let _ = tx.send(Message::Binary(Bytes::from(m)));
            }
        }
        let t = now_ms();
        while let Some(e) = self.c.poll_event() {
            match &e {
                Event::Acked { seq, reply } => self.settled.entry(*seq).or_default().push(Ok(reply.clone())),
                Event::Rejected { seq, error } => self.settled.entry(*seq).or_default().push(Err(error.clone())),
                _ => {}
            }
            self.events.push((t, e));
        }
    }

    /// Records what a message carries.
    fn inspect(&mut self, data: &Bytes) {
        self.messages += 1;
        self.bytes += data.len() as u64;
        if self.record {
            self.raw.push(data.clone());
        }
        let Ok(frames) = raw::frames(data) else { return };
        for f in frames {
            match &f {
                Frame::Push(items) => match Push::decode(items) {
                    Ok(Push::Change { changes, .. }) => {
                        self.change_pushes += 1;
                        self.received_keys.extend(changes.iter().filter_map(|c| c.key().cloned()));
                    }
                    Ok(Push::Snap { entries, .. }) => {
                        self.snap_pushes += 1;
                        self.received_keys.extend(entries.into_iter().map(|e| e.key));
                    }
                    Ok(Push::Full { .. }) => self.full_pushes += 1,
                    _ => {}
                },
                Frame::Map(_) => {
                    if let Ok(r) = SubReply::decode(&f) {
                        self.sub_modes.push(match r.mode {
                            SubMode::Continue => "continue".into(),
                            SubMode::Full => "full".into(),
                        });
                    }
                }
                Frame::Array(_) => {
                    if let Ok(a) = Ack::decode(&f) {
                        self.received_keys.extend(a.changes.unwrap_or_default().iter().filter_map(|c| c.key().cloned()));
                    }
                }
                _ => {}
            }
        }
    }

    /// The link ended with `code`.
    fn link_closed(&mut self, code: u16, reason: String) {
        self.closes.push((code, reason));
        self.connected = false;
        self.out = None;
        let local = self.local_now();
        self.advice = Some(self.c.on_close(code, local));
        self.flush();
    }
}

struct Link {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    reading: watch::Sender<bool>,
}

/// A sync client over a real WebSocket.
pub struct TestClient {
    /// Its id.
    pub id: String,
    url: String,
    connect_opts: ConnectOpts,
    shared: Arc<Mutex<St>>,
    wake: Arc<Notify>,
    link: Option<Link>,
}

impl TestClient {
    /// A client for the hub at `url`, offline.
    pub fn new(url: &str, opts: ClientOpts) -> TestClient {
        let c = SyncClient::new(ClientConfig {
            client_id: opts.client_id.clone(),
            token: opts.token.clone(),
            patterns: opts.patterns.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect(),
            engine: Config::default(),
        });
        let st = St {
            c,
            skew: opts.skew_ms,
            events: Vec::new(),
            raw: Vec::new(),
            received_keys: Vec::new(),
            snap_pushes: 0,
            full_pushes: 0,
            change_pushes: 0,
            sub_modes: Vec::new(),
            closes: Vec::new(),
            errors: Vec::new(),
            settled: HashMap::new(),
            advice: None,
            connected: false,
            messages: 0,
            bytes: 0,
            record: opts.record,
            out: None,
            generation: 0,
        };
        TestClient { id: opts.client_id, url: url.to_string(), connect_opts: opts.connect, shared: Arc::new(Mutex::new(st)), wake: Arc::new(Notify::new()), link: None }
    }

    /// Connects a new client and waits until it is live.
    pub async fn live(url: &str, opts: ClientOpts) -> TestClient {
        let mut c = TestClient::new(url, opts);
        c.connect().await;
        assert!(c.wait_live(IO_TIMEOUT).await, "client {} not live: {}", c.id, c.describe());
        c
    }

    /// The shared state, locked.
    pub fn st(&self) -> MutexGuard<'_, St> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a socket (dropping the old one) and hands it to the state machine, which
    /// sends HELLO, its unacknowledged writes and SUB (resuming when it can).
    pub async fn connect(&mut self) {
        self.try_connect().await.unwrap_or_else(|e| panic!("client {}: {e}", self.id));
    }

    /// [`TestClient::connect`], reporting a failed upgrade instead of panicking.
    pub async fn try_connect(&mut self) -> Result<(), String> {
        self.drop_link();
        let ws: Ws = raw::connect(&self.url, &self.connect_opts).await?;
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (reading_tx, reading_rx) = watch::channel(true);
        let generation = {
            let mut st = self.st();
            st.generation += 1;
            st.out = Some(tx);
            st.connected = true;
            let local = st.local_now();
            st.c.on_open(local);
            st.flush();
            st.generation
        };
        let writer = tokio::spawn(write_loop(sink, rx));
        let reader = tokio::spawn(read_loop(self.shared.clone(), self.wake.clone(), stream, reading_rx, generation));
        self.link = Some(Link { reader, writer, reading: reading_tx });
        Ok(())
    }

    /// The network drops the link: the socket is closed without a close frame, and the
    /// state machine learns it as 1006.
    pub fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            link.reader.abort();
            link.writer.abort();
            let mut st = self.st();
            st.generation += 1;
            if st.connected {
                st.link_closed(1006, "dropped by the test".into());
            }
        }
    }

    /// Closes cleanly with `code` and waits (bounded) for the hub's answer.
    pub async fn close(&mut self, code: u16) {
        let Some(link) = self.link.take() else { return };
        {
            let st = self.st();
            if let Some(tx) = &st.out {
                let _ = tx.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: "bye".into() })));
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), link.reader).await;
        link.writer.abort();
        let mut st = self.st();
        st.generation += 1;
        if st.connected {
            st.link_closed(code, "closed by the test".into());
        }
    }

    /// Stops reading the socket (the hub's messages pile up in its buffer).
    pub fn stop_reading(&self) {
        if let Some(l) = &self.link {
            let _ = l.reading.send(false);
        }
    }

    /// Reads again.
    pub fn resume_reading(&self) {
        if let Some(l) = &self.link {
            let _ = l.reading.send(true);
        }
    }

    /// Whether a socket is open.
    pub fn connected(&self) -> bool {
        self.st().connected
    }

    /// The connection status.
    pub fn status(&self) -> Status {
        self.st().c.status()
    }

    /// Writes not yet confirmed.
    pub fn pending(&self) -> usize {
        self.st().c.pending_len()
    }

    /// The state machine's counters.
    pub fn stats(&self) -> ClientStats {
        self.st().c.stats().clone()
    }

    /// Runs a command on the client (reads locally; writes optimistically, then sent).
    pub fn exec(&self, args: &[Bytes]) -> Submitted {
        let mut st = self.st();
        let local = st.local_now();
        let r = st.c.execute(args, local);
        st.flush();
        drop(st);
        self.wake.notify_one();
        r
    }

    /// [`TestClient::exec`] from words.
    pub fn run(&self, parts: &[&str]) -> Submitted {
        self.exec(&super::cmd(parts))
    }

    /// Runs commands as one transaction.
    pub fn transaction(&self, cmds: &[Vec<Bytes>]) -> Submitted {
        let mut st = self.st();
        let local = st.local_now();
        let r = st.c.transaction(cmds, local);
        st.flush();
        drop(st);
        self.wake.notify_one();
        r
    }

    /// Sends a command to the hub as is (not applied locally) and waits for its reply.
    pub async fn remote(&self, args: &[Bytes]) -> Option<Frame> {
        let id = {
            let mut st = self.st();
            let id = st.c.remote(args.to_vec())?;
            st.flush();
            id
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            {
                let st = self.st();
                for (_, e) in st.events.iter().rev() {
                    if let Event::Reply { id: i, reply } = e {
                        if *i == id {
                            return Some(reply.clone());
                        }
                    }
                }
                if !st.connected {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// Runs the state machine's timer now (expires due keys).
    pub fn tick(&self) {
        let mut st = self.st();
        let local = st.local_now();
        st.c.tick(local);
        st.flush();
    }

    /// Waits until the client is live.
    pub async fn wait_live(&self, limit: Duration) -> bool {
        super::eventually(limit, || self.status() == Status::Live).await
    }

    /// Waits until the client is live with nothing pending.
    pub async fn wait_settled(&self, limit: Duration) -> bool {
        super::eventually(limit, || {
            let st = self.st();
            st.c.status() == Status::Live && st.c.pending_len() == 0
        })
        .await
    }

    /// Waits until the link is closed (by the hub); returns the close code.
    pub async fn wait_closed(&self, limit: Duration) -> Option<u16> {
        if super::eventually(limit, || !self.connected()).await {
            self.st().closes.last().map(|c| c.0)
        } else {
            None
        }
    }

    /// The visible state (what reads see), read through the state machine.
    pub fn state(&self) -> State {
        let mut st = self.st();
        let local = st.local_now();
        let s = state::read_client(&mut st.c, local);
        st.flush();
        s
    }

    /// A one-line summary for failure messages.
    pub fn describe(&self) -> String {
        let st = self.st();
        format!(
            "{} status={:?} pending={} connected={} closes={:?} errors={:?} stats={:?} sub_modes={:?} resume={:?}",
            self.id,
            st.c.status(),
            st.c.pending_len(),
            st.connected,
            st.closes,
            st.errors,
            st.c.stats(),
            st.sub_modes,
            st.c.resume_point()
        )
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            link.reader.abort();
            link.writer.abort();
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(m) = rx.recv().await {
        let closing = matches!(m, Message::Close(_));
        if sink.send(m).await.is_err() || closing {
            break;
        }
    }
}

async fn read_loop(shared: Arc<Mutex<St>>, wake: Arc<Notify>, mut stream: SplitStream<Ws>, mut reading: watch::Receiver<bool>, generation: u64) {
    fn lock(s: &Arc<Mutex<St>>, generation: u64) -> Option<MutexGuard<'_, St>> {
        let st = s.lock().unwrap_or_else(|e| e.into_inner());
        (st.generation == generation).then_some(st)
    }
    loop {
        // The host's timer: wake at the state machine's next deadline (local → true time).
        let sleep_for = {
            let Some(st) = lock(&shared, generation) else { return };
            match st.c.next_deadline() {
                Some(local) => Duration::from_millis((local as i64 - st.local_now() as i64).clamp(0, 60_000) as u64),
                None => Duration::from_secs(60),
            }
        };
        let is_reading = *reading.borrow_and_update();
        // Biased, with the reading switch first: after `stop_reading` returns, a message
        // that arrives (the acks of writes made after it) must not be taken by a select
        // that was already waiting on the stream. Unbiased, tokio picks a ready branch at
        // random, so `resent_writes_whose_acks_were_lost_apply_once` could read an ack
        // after `stop_reading` (its `pending() == 6` failed once on a loaded machine).
        tokio::select! {
            biased;
            r = reading.changed() => {
                if r.is_err() {
                    return;
                }
            }
            m = stream.next(), if is_reading => {
                let Some(mut st) = lock(&shared, generation) else { return };
                match m {
                    Some(Ok(Message::Binary(data))) => {
                        st.inspect(&data);
                        let local = st.local_now();
                        if let Err(e) = st.c.on_message(&data, local) {
                            st.errors.push(e.to_string());
                            if let Some(tx) = &st.out {
                                let _ = tx.send(Message::Close(Some(CloseFrame { code: CloseCode::from(4000), reason: "protocol error".into() })));
                            }
                            st.link_closed(4000, e.to_string());
                            return;
                        }
                        st.flush();
                    }
                    Some(Ok(Message::Text(t))) => st.errors.push(format!("text message from the hub: {t}")),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                        st.link_closed(code, reason);
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        st.link_closed(1006, e.to_string());
                        return;
                    }
                    None => {
                        st.link_closed(1006, "end of stream".into());
                        return;
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                let Some(mut st) = lock(&shared, generation) else { return };
                let local = st.local_now();
                st.c.tick(local);
                st.flush();
            }
            _ = wake.notified() => {}
        }
    }
}

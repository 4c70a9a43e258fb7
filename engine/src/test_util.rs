//! Test helpers: an engine with a manual clock and assertion shorthands.

use crate::change::ChangeGroup;
use crate::engine::{Engine, Session};
use crate::reply::Reply;

/// An engine, one client session and a manual clock.
pub struct T {
    pub eng: Engine,
    pub sess: Session,
    pub now: u64,
}

impl T {
    pub fn new() -> T {
        T { eng: Engine::default(), sess: Session::new(1), now: 1_700_000_000_000 }
    }

    /// Runs a command and returns its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.eng.run(&mut self.sess, &args, self.now)
    }

    #[track_caller]
    pub fn ok(&mut self, args: &[&str]) {
        assert_eq!(self.cmd(args), Reply::Ok, "{:?}", args);
    }

    #[track_caller]
    pub fn simple(&mut self, args: &[&str], s: &str) {
        assert_eq!(self.cmd(args), Reply::simple(s.to_string()), "{:?}", args);
    }

    #[track_caller]
    pub fn int(&mut self, args: &[&str], n: i64) {
        assert_eq!(self.cmd(args), Reply::Int(n), "{:?}", args);
    }

    #[track_caller]
    pub fn bulk(&mut self, args: &[&str], s: &str) {
        assert_eq!(self.cmd(args), Reply::bulk(s), "{:?}", args);
    }

    #[track_caller]
    pub fn nil(&mut self, args: &[&str]) {
        assert_eq!(self.cmd(args), Reply::Nil, "{:?}", args);
    }

    #[track_caller]
    pub fn err(&mut self, args: &[&str], text: &str) {
        assert_eq!(self.cmd(args), Reply::err(text.to_string()), "{:?}", args);
    }

    #[track_caller]
    pub fn arr(&mut self, args: &[&str], items: &[&str]) {
        assert_eq!(self.cmd(args), Reply::bulks(items.iter()), "{:?}", args);
    }

    /// Takes the committed changes, each rendered as one space-joined line.
    pub fn changes(&mut self) -> Vec<String> {
        render(&self.eng.take_changes())
    }
}

/// Renders change groups as lines (`SET k v PXAT 1`), for assertions.
pub fn render(groups: &[ChangeGroup]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|g| g.changes.iter())
        .map(|c| c.args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "))
        .collect()
}

impl T {
    /// Checks the two properties every family promises: memory accounting kept per
    /// command equals a full recount, and the change stream taken so far, applied to a
    /// fresh engine, rebuilds the same live keys, values and deadlines (the `access` word
    /// is each engine's own LRU/LFU clock, not replicated state).
    #[track_caller]
    pub fn assert_replays(&mut self) {
        let tracked = self.eng.used_memory();
        self.eng.recount_memory();
        assert_eq!(tracked, self.eng.used_memory(), "used_memory drifted from a recount");
        let mut fresh = Engine::default();
        for g in self.eng.take_changes() {
            if let Err(e) = fresh.apply_group(&g, self.now) {
                panic!("group {:?} failed to apply: {:?}", g, e);
            }
        }
        for (i, (a, b)) in self.eng.dbs().iter().zip(fresh.dbs()).enumerate() {
            let live: Vec<_> = a.iter().filter(|(_, e)| !e.is_expired(self.now)).collect();
            assert_eq!(live.len(), b.len(), "db {} key count", i);
            for (k, e) in live {
                let got = b.get(k).map(|o| (&o.value, o.expire_at));
                assert_eq!(got, Some((&e.value, e.expire_at)), "db {} key {:?}", i, String::from_utf8_lossy(k));
            }
        }
    }
}

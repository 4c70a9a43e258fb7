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

    /// Runs a command with binary arguments.
    pub fn cmdb(&mut self, args: &[&[u8]]) -> Reply {
        self.eng.run(&mut self.sess, args, self.now)
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

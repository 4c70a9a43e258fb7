//! The table entries of Lua scripting and functions (EVAL, EVALSHA, their `_RO` forms,
//! SCRIPT, FCALL, FUNCTION). A host runs them: the native hub embeds Lua 5.1 and calls
//! back into the engine with [`crate::Engine::script_call`]; the browser and the edge
//! answer [`NOT_HERE`]. The engine itself stays free of any VM (and wasm32-clean).

use bytes::Bytes;

use crate::command::flags::*;
use crate::command::{numkeys_at, CommandSpec, Handler};

/// What a host without a Lua VM answers to the scripting commands.
pub const NOT_HERE: &str =
    "ERR scripting is served only by the native hub (recached), on its RESP port";

/// Flags of EVAL and friends (Redis: `noscript skip_monitor may_replicate no_mandatory_keys stale`).
const EVAL: u32 = NOSCRIPT | STALE;

/// The scripting commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("eval", -3, EVAL, "scripting", Handler::Host)
        .keys_with(script_keys)
        .doc("Executes a server-side Lua script.", "2.6.0"),
    CommandSpec::new("evalsha", -3, EVAL, "scripting", Handler::Host)
        .keys_with(script_keys)
        .doc("Executes a server-side Lua script by SHA1 digest.", "2.6.0"),
    CommandSpec::new("eval_ro", -3, EVAL | READONLY, "scripting", Handler::Host)
        .keys_with(script_keys)
        .doc("Executes a read-only server-side Lua script.", "7.0.0"),
    CommandSpec::new(
        "evalsha_ro",
        -3,
        EVAL | READONLY,
        "scripting",
        Handler::Host,
    )
    .keys_with(script_keys)
    .doc(
        "Executes a read-only server-side Lua script by SHA1 digest.",
        "7.0.0",
    ),
    CommandSpec::new("script", -2, NOSCRIPT, "scripting", Handler::Host)
        .doc("A container for Lua scripts management commands.", "2.6.0"),
    CommandSpec::new("fcall", -3, EVAL, "scripting", Handler::Host)
        .keys_with(script_keys)
        .doc("Invokes a function.", "7.0.0"),
    CommandSpec::new("fcall_ro", -3, EVAL | READONLY, "scripting", Handler::Host)
        .keys_with(script_keys)
        .doc("Invokes a read-only function.", "7.0.0"),
    CommandSpec::new("function", -2, NOSCRIPT, "scripting", Handler::Host)
        .doc("A container for function commands.", "7.0.0"),
];

/// [`NOT_HERE`] for a scripting command, for hosts without a VM; `None` for others.
pub fn not_here(args: &[Bytes]) -> Option<crate::reply::Reply> {
    let name = args.first()?;
    let scripting = COMMANDS
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c.name.as_bytes()));
    scripting.then(|| crate::reply::Reply::err(NOT_HERE))
}

/// `EVAL script numkeys key …`: the keys follow `numkeys` at position 2.
fn script_keys(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 2)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::reply::Reply;
    use crate::{Engine, NoHost, ScriptRun, Session};

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn script_calls_are_checked_like_redis() {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        let mut run = ScriptRun::default();
        let mut call = |e: &mut Engine, run: &mut ScriptRun, a: &[&str]| {
            e.script_call(&mut s, &args(a), 0, &mut NoHost, run)
        };
        assert_eq!(
            call(&mut e, &mut run, &["nosuch"]),
            Reply::err("ERR Unknown Redis command called from script")
        );
        assert_eq!(
            call(&mut e, &mut run, &["get"]),
            Reply::err("ERR Wrong number of args calling Redis command from script")
        );
        assert_eq!(
            call(&mut e, &mut run, &["multi"]),
            Reply::err("ERR This Redis command is not allowed from script")
        );
        assert_eq!(
            call(&mut e, &mut run, &["eval", "return 1", "0"]),
            Reply::err("ERR This Redis command is not allowed from script")
        );
        assert!(!run.wrote);
        assert_eq!(call(&mut e, &mut run, &["set", "k", "v"]), Reply::Ok);
        assert!(run.wrote);
        let mut ro = ScriptRun {
            read_only: true,
            ..ScriptRun::default()
        };
        assert_eq!(
            call(&mut e, &mut ro, &["set", "k", "v"]),
            Reply::err("ERR Write commands are not allowed from read-only scripts.")
        );
        assert_eq!(call(&mut e, &mut ro, &["get", "k"]), Reply::bulk("v"));
        // The host's refusal applies until the first write, not after it.
        e.set_write_refusal(Some(Reply::err(
            "READONLY You can't write against a read only replica.",
        )));
        let mut fresh = ScriptRun::default();
        assert_eq!(
            call(&mut e, &mut fresh, &["set", "k", "w"]),
            Reply::err("READONLY You can't write against a read only replica.")
        );
        assert_eq!(call(&mut e, &mut run, &["set", "k", "w"]), Reply::Ok);
    }

    #[test]
    fn the_writes_of_a_script_are_one_change_group() {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        struct Script;
        impl crate::Host for Script {
            fn call(
                &mut self,
                engine: &mut Engine,
                session: &mut Session,
                _: &[Bytes],
                now: u64,
            ) -> Reply {
                let mut run = ScriptRun::default();
                for key in ["a", "b", "c"] {
                    engine.script_call(
                        session,
                        &args(&["set", key, "1"]),
                        now,
                        &mut crate::NoHost,
                        &mut run,
                    );
                }
                Reply::Ok
            }
        }
        let _ = e.take_changes();
        e.execute(&mut s, &args(&["eval", "…", "0"]), 0, &mut Script);
        let groups = e.take_changes();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].changes.len(), 3);
    }

    #[test]
    fn hosts_without_a_vm_say_where_scripting_is() {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        for name in ["EVAL", "evalsha", "SCRIPT"] {
            let reply = e
                .execute(&mut s, &args(&[name, "x", "0"]), 0, &mut NoHost)
                .into_reply();
            assert_eq!(reply, Reply::err(super::NOT_HERE));
        }
    }
}

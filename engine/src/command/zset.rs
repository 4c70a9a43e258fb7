//! zset commands.

use crate::command::CommandSpec;

/// The zset commands.
pub static COMMANDS: &[CommandSpec] = &[];

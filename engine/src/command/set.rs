//! set commands.

use crate::command::CommandSpec;

/// The set commands.
pub static COMMANDS: &[CommandSpec] = &[];

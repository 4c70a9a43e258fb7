//! list commands.

use crate::command::CommandSpec;

/// The list commands.
pub static COMMANDS: &[CommandSpec] = &[];

//! expire commands.

use crate::command::CommandSpec;

/// The expire commands.
pub static COMMANDS: &[CommandSpec] = &[];

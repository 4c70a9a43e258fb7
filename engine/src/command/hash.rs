//! hash commands.

use crate::command::CommandSpec;

/// The hash commands.
pub static COMMANDS: &[CommandSpec] = &[];

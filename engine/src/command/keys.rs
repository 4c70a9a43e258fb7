//! keys commands.

use crate::command::CommandSpec;

/// The keys commands.
pub static COMMANDS: &[CommandSpec] = &[];

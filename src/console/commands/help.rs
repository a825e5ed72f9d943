//! `help`: one line per command with its usage, generated from the command definitions.

use crate::console::command::{COMMANDS, CommandDef, Reply};

pub const DEF: CommandDef = CommandDef {
    name: "help",
    usage: "help",
    summary: "this list",
};

pub fn run() -> Reply {
    let width = COMMANDS.iter().map(|d| d.usage.len()).max().unwrap_or(0);
    Reply::Lines(
        COMMANDS
            .iter()
            .map(|d| format!("{:<width$}  {}", d.usage, d.summary))
            .collect(),
    )
}

//! `quit`: closes this connection, with no `.` line (as Gearman::Driver does).

use crate::console::command::{CommandDef, Reply};

pub const DEF: CommandDef = CommandDef {
    name: "quit",
    usage: "quit",
    summary: "close this connection",
};

pub fn run() -> Reply {
    Reply::Close
}

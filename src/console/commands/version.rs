//! `version`: the geardriver version.

use crate::console::command::{CommandDef, Reply};

pub const DEF: CommandDef = CommandDef {
    name: "version",
    usage: "version",
    summary: "the geardriver version",
};

pub fn run() -> Reply {
    Reply::Lines(vec![format!("geardriver {}", env!("CARGO_PKG_VERSION"))])
}

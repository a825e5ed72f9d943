//! `shutdown`: graceful stop of the whole host; every process finishes its job first.

use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "shutdown",
    usage: "shutdown",
    summary: "stop the host gracefully (every process finishes its job)",
};

pub fn run(host: &HostHandle) -> Reply {
    host.shutdown();
    Reply::ok()
}

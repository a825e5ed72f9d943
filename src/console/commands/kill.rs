//! `kill PID…`: SIGTERM to those of the given pids that are our processes (each finishes its
//! job and is replaced as needed); pids that are not ours are ignored.

use super::refused;
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "kill",
    usage: "kill PID...",
    summary: "stop those processes (they are replaced as needed)",
};

pub async fn run(host: &HostHandle, pids: &[String]) -> Reply {
    let pids: Vec<u32> = pids.iter().filter_map(|p| p.parse().ok()).collect();
    match host.kill(pids).await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

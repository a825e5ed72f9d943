//! `reload`: re-read the config, as SIGHUP does. An invalid config is refused with its
//! error and the old one stays. Also retries jobs marked failed.

use super::refused;
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "reload",
    usage: "reload",
    summary: "re-read the config file (an invalid one is refused and the old one kept)",
};

pub async fn run(host: &HostHandle) -> Reply {
    match host.reload().await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

//! `killall JOB…` or `killall *`: every process of those jobs or groups (replaced as
//! needed). Also retries a job the driver gave up on. All names are checked before anything
//! is stopped.

use super::refused;
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "killall",
    usage: "killall JOB... | killall *",
    summary: "stop every process of those jobs (replaced as needed); retries failed jobs",
};

pub async fn run(host: &HostHandle, jobs: &[String]) -> Reply {
    if jobs.is_empty() {
        return Reply::error("invalid_value", "no job_names given");
    }
    match host.kill_all(jobs.to_vec()).await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

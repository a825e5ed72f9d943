//! `set_max_processes JOB N`. Lowering max below the current count stops the surplus: idle
//! processes first, busy ones after their job.

use super::{count, invalid_job, refused};
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "set_max_processes",
    usage: "set_max_processes JOB N",
    summary: "allow at most N processes of the job (N >= its min); a surplus is stopped",
};

pub async fn run(host: &HostHandle, job: Option<&str>, value: Option<&str>) -> Reply {
    let job = job.unwrap_or_default();
    if host.table().current().pool_of_job(job).is_none() {
        return invalid_job(job);
    }
    let Some(max) = count(value) else {
        return Reply::error("invalid_value", "max_processes must be >= 0");
    };
    match host.set_limits(job, None, Some(max)).await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

//! `set_min_processes JOB N`.

use super::{count, invalid_job, refused};
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "set_min_processes",
    usage: "set_min_processes JOB N",
    summary: "keep at least N processes of the job (N <= its max)",
};

pub async fn run(host: &HostHandle, job: Option<&str>, value: Option<&str>) -> Reply {
    let job = job.unwrap_or_default();
    if host.table().current().pool_of_job(job).is_none() {
        return invalid_job(job);
    }
    let Some(min) = count(value) else {
        return Reply::error("invalid_value", "min_processes must be >= 0");
    };
    match host.set_limits(job, Some(min), None).await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

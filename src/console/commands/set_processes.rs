//! `set_processes JOB MIN MAX`: both limits at once (min checked, then max, then their
//! order). Also retries a job the driver gave up on.

use super::{count, invalid_job, refused};
use crate::console::command::{CommandDef, Reply};
use crate::driver::HostHandle;

pub const DEF: CommandDef = CommandDef {
    name: "set_processes",
    usage: "set_processes JOB MIN MAX",
    summary: "set both limits; also retries a job marked failed",
};

pub async fn run(
    host: &HostHandle,
    job: Option<&str>,
    min: Option<&str>,
    max: Option<&str>,
) -> Reply {
    let job = job.unwrap_or_default();
    if host.table().current().pool_of_job(job).is_none() {
        return invalid_job(job);
    }
    let Some(min) = count(min) else {
        return Reply::error("invalid_value", "min_processes must be >= 0");
    };
    let Some(max) = count(max) else {
        return Reply::error("invalid_value", "max_processes must be >= 0");
    };
    match host.set_limits(job, Some(min), Some(max)).await {
        Ok(()) => Reply::ok(),
        Err(e) => refused(e),
    }
}

//! `show JOB`: the job's status line (unpadded), then one line per process pid.

use super::{invalid_job, status};
use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::Snapshot;

pub const DEF: CommandDef = CommandDef {
    name: "show",
    usage: "show JOB",
    summary: "the job's status line, then the pid of each of its processes",
};

pub fn run(snapshot: &Snapshot, job: Option<&str>) -> Reply {
    let name = job.unwrap_or_default();
    let Some(job) = snapshot.job(name) else {
        return invalid_job(name);
    };
    let mut lines = vec![status::line(job, [0, 0, 0, 0])];
    lines.extend(job.pids.iter().map(u32::to_string));
    Reply::Lines(lines)
}

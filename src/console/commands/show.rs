//! `show JOB`: the job's status line (unpadded), then one line per process pid. A group's
//! name shows each of its jobs' status lines, then the group's pids.

use super::{invalid_job, status};
use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::Snapshot;

pub const DEF: CommandDef = CommandDef {
    name: "show",
    usage: "show JOB|GROUP",
    summary: "the job's (or the group's jobs') status line, then the pid of each of its processes",
};

pub fn run(snapshot: &Snapshot, job: Option<&str>) -> Reply {
    let name = job.unwrap_or_default();
    let jobs = snapshot.jobs_named(name);
    let Some(first) = jobs.first() else {
        return invalid_job(name);
    };
    let mut lines: Vec<String> = jobs.iter().map(|j| status::line(j, [0, 0, 0, 0])).collect();
    // The jobs of a group share its processes.
    lines.extend(first.pids.iter().map(u32::to_string));
    Reply::Lines(lines)
}

//! `show JOB`: the job's status line (unpadded), then one line per process pid, exactly as
//! Gearman::Driver's. A group's name shows each of its jobs' status lines, then the group's
//! pids. `show JOB extended` gives each pid its figures: memory (with its children's), CPU
//! share over the last second, and its state — for a busy one the job's function, handle and
//! for how long: `4242  rss 12.3M  cpu 4.5%  busy resize H:box:42 for 3s` (`busy (C) …` when
//! the job set a custom state).

use super::{invalid_job, status};
use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::{Snapshot, mib, percent};

pub const DEF: CommandDef = CommandDef {
    name: "show",
    usage: "show JOB|GROUP [extended]",
    summary: "the job's (or the group's jobs') status line, then the pid of each of its processes; extended: with memory, CPU, the job it runs",
};

pub fn run(snapshot: &Snapshot, job: Option<&str>, extended: bool) -> Reply {
    lines(snapshot, job, extended, crate::stats::now_ms())
}

/// `show` at `now_ms`.
pub fn lines(snapshot: &Snapshot, job: Option<&str>, extended: bool, now_ms: i64) -> Reply {
    let name = job.unwrap_or_default();
    let jobs = snapshot.jobs_named(name);
    let Some(first) = jobs.first() else {
        return invalid_job(name);
    };
    let mut lines: Vec<String> = jobs.iter().map(|j| status::line(j, [0, 0, 0, 0])).collect();
    // The jobs of a group share its processes.
    let rows = |pid: u32| -> Vec<Option<&crate::console::snapshot::ProcessView>> {
        let rows: Vec<_> = snapshot
            .processes
            .iter()
            .filter(|p| p.pid == pid)
            .map(Some)
            .collect();
        if rows.is_empty() || !extended {
            vec![None]
        } else {
            rows
        }
    };
    lines.extend(
        first
            .pids
            .iter()
            .flat_map(|&pid| rows(pid).into_iter().map(move |p| (pid, p)))
            .map(|(pid, p)| {
                let Some(p) = p else {
                    return pid.to_string();
                };
                let doing = match p.current_job(now_ms) {
                    Some((function, handle, took)) => {
                        let state = match (p.state, p.shown_custom_state()) {
                            (crate::stats::ProcessState::Stopping, _) => {
                                "stopping, finishing".to_string()
                            }
                            (_, Some(custom)) => format!("busy ({custom})"),
                            _ => "busy".to_string(),
                        };
                        format!("{state} {function} {handle} for {took}")
                    }
                    None => match p.state {
                        crate::stats::ProcessState::Idle => "idle".to_string(),
                        crate::stats::ProcessState::Stopping => "stopping".to_string(),
                        _ => "starting".to_string(),
                    },
                };
                format!(
                    "{pid}  rss {}  cpu {}  {doing}",
                    mib(p.rss_bytes),
                    percent(p.cpu_permille)
                )
            }),
    );
    Reply::Lines(lines)
}

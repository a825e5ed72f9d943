//! `scoreboard`: one line per process — `pid  job  state  jobs_done  since` — with the state
//! as Apache's scoreboard letters: `_` idle, `B` busy, `S` starting, `T` stopping.

use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::{Snapshot, utc};

pub const DEF: CommandDef = CommandDef {
    name: "scoreboard",
    usage: "scoreboard",
    summary: "every process: pid, job, state (_ idle, B busy, S starting, T stopping), jobs done, since",
};

pub fn run(snapshot: &Snapshot) -> Reply {
    let processes = &snapshot.processes;
    let pid_w = processes
        .iter()
        .map(|p| p.pid.to_string().len())
        .max()
        .unwrap_or(1);
    let job_w = processes.iter().map(|p| p.job.len()).max().unwrap_or(1);
    let done_w = processes
        .iter()
        .map(|p| p.jobs_done.to_string().len())
        .max()
        .unwrap_or(1);
    Reply::Lines(
        processes
            .iter()
            .map(|p| {
                format!(
                    "{:>pid_w$}  {:<job_w$}  {}  {:>done_w$}  {}",
                    p.pid,
                    p.job,
                    p.state.letter(),
                    p.jobs_done,
                    utc(p.since_ms.div_euclid(1000))
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::snapshot::ProcessView;
    use crate::stats::ProcessState;

    #[test]
    fn one_aligned_line_per_process() {
        let snapshot = Snapshot {
            jobs: vec![],
            processes: vec![
                ProcessView {
                    pid: 7,
                    job: "resize".into(),
                    state: ProcessState::Busy,
                    jobs_done: 120,
                    since_ms: 1_700_000_000_500,
                    ..ProcessView::default()
                },
                ProcessView {
                    pid: 12345,
                    job: "mail".into(),
                    state: ProcessState::Idle,
                    jobs_done: 3,
                    since_ms: 0,
                    ..ProcessView::default()
                },
            ],
            pools: vec![],
        };
        assert_eq!(
            run(&snapshot),
            Reply::Lines(vec![
                "    7  resize  B  120  2023-11-14T22:13:20".into(),
                "12345  mail    _    3  1970-01-01T00:00:00".into(),
            ])
        );
    }
}

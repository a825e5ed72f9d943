//! `scoreboard`: one line per process — `pid  job  state  jobs_done  since  rss  cpu  handle
//! for` — with the state as Apache's scoreboard letters: `_` idle, `B` busy, `S` starting, `T`
//! stopping, or for a busy one the letter its job set for what it does (`set_state`, a
//! program's `state C`); its resident memory (with its children's) and CPU share over the last second;
//! for a busy one the handle of the job it holds (`-` when it does not say) and for how long,
//! else `-  -`.

use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::{Snapshot, mib, percent, utc};

pub const DEF: CommandDef = CommandDef {
    name: "scoreboard",
    usage: "scoreboard",
    summary: "every process: pid, job, state (_ idle, B busy, S starting, T stopping, or the letter a busy job set), jobs done, since, memory, CPU, job handle, for how long",
};

pub fn run(snapshot: &Snapshot) -> Reply {
    lines(snapshot, crate::stats::now_ms())
}

/// The scoreboard at `now_ms`.
pub fn lines(snapshot: &Snapshot, now_ms: i64) -> Reply {
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
    let rows: Vec<[String; 4]> = processes
        .iter()
        .map(|p| {
            let (handle, took) = p
                .current_job(now_ms)
                .map_or(("-".into(), "-".into()), |(_, handle, took)| (handle, took));
            [mib(p.rss_bytes), percent(p.cpu_permille), handle, took]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(1);
    let (rss_w, cpu_w, handle_w) = (width(0), width(1), width(2));
    Reply::Lines(
        processes
            .iter()
            .zip(&rows)
            .map(|(p, [rss, cpu, handle, took])| {
                format!(
                    "{:>pid_w$}  {:<job_w$}  {}  {:>done_w$}  {}  {rss:>rss_w$}  {cpu:>cpu_w$}  {handle:<handle_w$}  {took}",
                    p.pid,
                    p.job,
                    p.letter(),
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
    use crate::stats::{CustomState, ProcessState};

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
                    rss_bytes: Some(12_900_000),
                    cpu_permille: Some(45),
                    function: Some("resize".into()),
                    handle: "H:box:42".into(),
                    job_started_ms: 1_700_000_000_500,
                    ..ProcessView::default()
                },
                ProcessView {
                    pid: 8,
                    job: "resize".into(),
                    state: ProcessState::Busy,
                    jobs_done: 1,
                    since_ms: 1_700_000_000_500,
                    function: Some("resize".into()),
                    job_started_ms: 1_700_000_000_500,
                    custom_state: CustomState::try_from('C').ok(),
                    ..ProcessView::default()
                },
                ProcessView {
                    pid: 9,
                    job: "resize".into(),
                    state: ProcessState::Stopping,
                    since_ms: 1_700_000_000_500,
                    custom_state: CustomState::try_from('C').ok(),
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
            lines(&snapshot, 1_700_000_003_600),
            Reply::Lines(vec![
                "    7  resize  B  120  2023-11-14T22:13:20  12.3M  4.5%  H:box:42  3s".into(),
                "    8  resize  C    1  2023-11-14T22:13:20      -     -  -         3s".into(),
                "    9  resize  T    0  2023-11-14T22:13:20      -     -  -         -".into(),
                "12345  mail    _    3  1970-01-01T00:00:00      -     -  -         -".into(),
            ])
        );
    }
}

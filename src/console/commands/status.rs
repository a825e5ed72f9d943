//! `status`: one line per job, sorted by name —
//! `name  min  max  current  lastrun  lasterror  ERROR: msg`, Gearman::Driver's columns: two
//! spaces apart, the name left-aligned and the numbers right-aligned to the widest value,
//! times in UTC. A job the driver gave up on shows `FAILED: reason` in the last column.

use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::{JobView, Snapshot, utc};

pub const DEF: CommandDef = CommandDef {
    name: "status",
    usage: "status",
    summary: "every job: min, max and current processes, last run, last error and its message",
};

pub fn run(snapshot: &Snapshot) -> Reply {
    Reply::Lines(lines(&snapshot.jobs))
}

/// Column widths: the longest name, and the widest min, max and current (at least 1).
pub fn widths(jobs: &[JobView]) -> [usize; 4] {
    let digits = |n: usize| n.to_string().len();
    let mut w = [0, 1, 1, 1];
    for job in jobs {
        w[0] = w[0].max(job.name.len());
        w[1] = w[1].max(digits(job.min as usize));
        w[2] = w[2].max(digits(job.max as usize));
        w[3] = w[3].max(digits(job.pids.len()));
    }
    w
}

pub fn lines(jobs: &[JobView]) -> Vec<String> {
    let w = widths(jobs);
    jobs.iter().map(|job| line(job, w)).collect()
}

/// One job's line. With no error the last column is empty, so the line ends in two spaces,
/// as Gearman::Driver's does.
pub fn line(job: &JobView, [w0, w1, w2, w3]: [usize; 4]) -> String {
    let last = match (&job.failed, job.lasterror_msg.trim()) {
        (Some(reason), _) => format!("FAILED: {}", one_line(reason)),
        (None, "") => String::new(),
        (None, message) => format!("ERROR: {}", one_line(message)),
    };
    format!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}  {}  {}",
        job.name,
        job.min,
        job.max,
        job.pids.len(),
        utc(job.lastrun),
        utc(job.lasterror),
        last
    )
}

/// A message on one line, whatever it holds.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, min: u32, max: u32, current: usize) -> JobView {
        JobView {
            name: name.into(),
            min,
            max,
            pids: (0..current as u32).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn columns_align_like_gearman_driver() {
        let jobs = vec![
            job("Live::Console::job1", 2, 10, 2),
            job("Live::Console::job2", 1, 1, 1),
        ];
        assert_eq!(
            lines(&jobs),
            vec![
                "Live::Console::job1  2  10  2  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
                "Live::Console::job2  1   1  1  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
            ]
        );
        let jobs = vec![job("a", 0, 1, 0), job("longer_name", 12, 100, 15)];
        assert_eq!(
            lines(&jobs),
            vec![
                "a             0    1   0  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
                "longer_name  12  100  15  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
            ]
        );
    }

    #[test]
    fn errors_and_failures_fill_the_last_column() {
        let mut failed = job("f", 1, 1, 0);
        failed.lastrun = 1_700_000_000;
        failed.lasterror = 1_700_000_001;
        failed.lasterror_msg = "fail: boom\nsecond line".into();
        assert_eq!(
            lines(&[failed.clone()]),
            vec![
                "f  1  1  0  2023-11-14T22:13:20  2023-11-14T22:13:21  ERROR: fail: boom second line"
            ]
        );
        failed.failed = Some("5 processes in a row died".into());
        assert!(lines(&[failed])[0].ends_with("  FAILED: 5 processes in a row died"));
        assert_eq!(lines(&[]), Vec::<String>::new());
    }
}

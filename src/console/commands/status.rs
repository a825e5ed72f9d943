//! `status`: one line per job, sorted by name —
//! `name  min  max  current  lastrun  lasterror  ERROR: msg`, Gearman::Driver's columns: two
//! spaces apart, the name left-aligned and the numbers right-aligned to the widest value,
//! times in UTC. A job the driver gave up on shows `FAILED: reason` in the last column.
//!
//! `status extended` adds two columns after `current`: the job's jobs waiting and running on
//! the job servers at the observer's last report (`-` when none could be read; autoscaling
//! off means no reports). Gearman::Driver's own `status` stays exactly as it was.

use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::{JobView, Snapshot, utc};

pub const DEF: CommandDef = CommandDef {
    name: "status",
    usage: "status [extended]",
    summary: "every job: min, max and current processes, last run, last error and its message; extended: jobs queued and running too",
};

pub fn run(snapshot: &Snapshot, extended: bool) -> Reply {
    if extended {
        Reply::Lines(extended_lines(&snapshot.jobs))
    } else {
        Reply::Lines(lines(&snapshot.jobs))
    }
}

/// `status extended`: `current` is followed by `queued  running`.
pub fn extended_lines(jobs: &[JobView]) -> Vec<String> {
    let w = widths(jobs);
    let queue = |job: &JobView| {
        job.queue
            .map_or(("-".to_string(), "-".to_string()), |(w, r)| {
                (w.to_string(), r.to_string())
            })
    };
    let qw = jobs.iter().map(|j| queue(j).0.len()).max().unwrap_or(1);
    let rw = jobs.iter().map(|j| queue(j).1.len()).max().unwrap_or(1);
    jobs.iter()
        .map(|job| {
            let (queued, running) = queue(job);
            format!(
                "{}  {queued:>qw$}  {running:>rw$}  {}",
                head(job, w),
                tail(job)
            )
        })
        .collect()
}

/// Column widths, in characters: the longest name, and the widest min, max and current (at
/// least 1).
pub fn widths(jobs: &[JobView]) -> [usize; 4] {
    let digits = |n: usize| n.to_string().len();
    let mut w = [0, 1, 1, 1];
    for job in jobs {
        w[0] = w[0].max(job.name.chars().count());
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
pub fn line(job: &JobView, w: [usize; 4]) -> String {
    format!("{}  {}", head(job, w), tail(job))
}

/// Name, min, max and current, aligned.
fn head(job: &JobView, [w0, w1, w2, w3]: [usize; 4]) -> String {
    format!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
        job.name,
        job.min,
        job.max,
        job.pids.len()
    )
}

/// Last run, last error and the message (or the reason the driver gave up).
fn tail(job: &JobView) -> String {
    let last = match (&job.failed, job.lasterror_msg.trim()) {
        (Some(reason), _) => format!("FAILED: {}", one_line(reason)),
        (None, "") => String::new(),
        (None, message) => format!("ERROR: {}", one_line(message)),
    };
    format!("{}  {}  {}", utc(job.lastrun), utc(job.lasterror), last)
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

    #[test]
    fn extended_status_adds_the_queue_after_current() {
        let mut busy = job("resize", 1, 10, 3);
        busy.queue = Some((120, 3));
        let unknown = job("mail", 0, 2, 0);
        assert_eq!(
            extended_lines(&[unknown, busy]),
            vec![
                "mail    0   2  0    -  -  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
                "resize  1  10  3  120  3  1970-01-01T00:00:00  1970-01-01T00:00:00  ",
            ]
        );
    }

    #[test]
    fn names_beyond_ascii_align_by_characters() {
        // Found by a trial: widths in bytes put `status extended`'s numbers in the wrong
        // columns.
        let mut a = job("ääää", 0, 0, 1);
        a.queue = Some((1, 1));
        let b = job("über_größe", 1, 1, 0);
        let lines = extended_lines(&[a, b]);
        assert_eq!(
            lines[0],
            "ääää        0  0  1  1  1  1970-01-01T00:00:00  1970-01-01T00:00:00  "
        );
        assert_eq!(
            lines[1],
            "über_größe  1  1  0  -  -  1970-01-01T00:00:00  1970-01-01T00:00:00  "
        );
    }
}

//! What the read-only commands show, gathered in one pass from the process table and the
//! stats table: per job its limits, processes, last run and last error; per process its
//! scoreboard state. Commands format a [`Snapshot`], so they are tested without a host.

use crate::driver::HostHandle;
use crate::driver::table::{ProcessEntry, Totals};
use crate::stats::{CustomState, Durations, ProcessState, SlotSnapshot};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by name.
    pub jobs: Vec<JobView>,
    /// Sorted by pid.
    pub processes: Vec<ProcessView>,
    /// Sorted by name.
    pub pools: Vec<PoolView>,
}

/// A pool (a group, or a job on its own), for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolView {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub failed: Option<String>,
    /// What its exited processes did (live ones' figures are in `processes`).
    pub exited: Totals,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobView {
    pub name: String,
    /// The pool serving it: its group, else the job itself.
    pub pool: String,
    pub min: u32,
    pub max: u32,
    pub pids: Vec<u32>,
    /// Seconds since the epoch; 0 = never.
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
    /// Why the driver gave up on the job, when it did.
    pub failed: Option<String>,
    /// Its jobs waiting and running on the job servers at the last queue report.
    pub queue: Option<(u64, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: u32,
    /// Which of its slots this row is (0..concurrency): a process that runs several jobs
    /// at once has a row for each.
    pub lane: usize,
    /// The pool (group or job) it serves.
    pub job: String,
    pub state: ProcessState,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    pub durations: Durations,
    /// When the current state began, milliseconds since the epoch.
    pub since_ms: i64,
    /// Resident memory with its descendants' and CPU share (‰ of a core), as last sampled.
    pub rss_bytes: Option<u64>,
    pub cpu_permille: Option<u32>,
    /// The job it runs: its function and handle (empty when the process does not say).
    pub function: Option<String>,
    pub handle: String,
    /// When the job in hand started (ms since the epoch; 0 when none).
    pub job_started_ms: i64,
    /// What the job in hand says it is doing (`set_state`), when it says.
    pub custom_state: Option<CustomState>,
}

impl Snapshot {
    pub fn collect(host: &HostHandle) -> Snapshot {
        let stats = host.stats();
        let tables = host.table().current();
        let mut jobs = Vec::new();
        let mut processes = Vec::new();
        let mut pools = Vec::new();
        for (pool, entry) in tables.pools() {
            pools.push(PoolView {
                name: pool.clone(),
                min: entry.min,
                max: entry.max,
                failed: entry.failed.clone(),
                exited: entry.exited.clone(),
            });
            // A row per slot: one per job a process runs at once.
            let slots: Vec<(&ProcessEntry, usize, Option<SlotSnapshot>)> = entry
                .processes
                .iter()
                .flat_map(|p| {
                    p.slots.iter().enumerate().map(move |(lane, &slot)| {
                        (p, lane, stats.read(slot).filter(|s| s.pid == p.pid))
                    })
                })
                .collect();
            for (p, lane, slot) in &slots {
                let pid = &p.pid;
                let (state, since_ms) = match slot {
                    Some(s) => {
                        let since = match s.state {
                            ProcessState::Busy => s.job_started_ms,
                            ProcessState::Idle => s.idle_since_ms,
                            _ => s.started_ms,
                        };
                        (s.state, since)
                    }
                    None => (ProcessState::Starting, p.started_ms),
                };
                processes.push(ProcessView {
                    pid: *pid,
                    job: pool.clone(),
                    state: if p.stopping {
                        ProcessState::Stopping
                    } else {
                        state
                    },
                    lane: *lane,
                    // The process's own figures, on its first row only (so sums hold).
                    rss_bytes: p.rss_bytes.filter(|_| *lane == 0),
                    cpu_permille: p.cpu_permille.filter(|_| *lane == 0),
                    function: slot
                        .as_ref()
                        .and_then(|s| s.function)
                        .and_then(|f| entry.jobs.get(f as usize))
                        .cloned(),
                    handle: slot.as_ref().map(|s| s.handle.clone()).unwrap_or_default(),
                    job_started_ms: slot.as_ref().map_or(0, |s| s.job_started_ms),
                    custom_state: slot.as_ref().and_then(|s| s.custom_state),
                    jobs_done: slot.as_ref().map_or(0, |s| s.jobs_done),
                    jobs_failed: slot.as_ref().map_or(0, |s| s.jobs_failed),
                    durations: slot
                        .as_ref()
                        .map(|s| s.durations.clone())
                        .unwrap_or_default(),
                    since_ms,
                });
            }
            for (index, name) in (0u32..).zip(&entry.jobs) {
                // What exited processes left, then what live ones say: one rule for both.
                let mut record = tables.job(name).cloned().unwrap_or_default();
                for slot in slots.iter().filter_map(|(_, _, s)| s.as_ref()) {
                    record.merge_slot(index, slot);
                }
                jobs.push(JobView {
                    name: name.clone(),
                    pool: pool.clone(),
                    min: entry.min,
                    max: entry.max,
                    pids: entry.processes.iter().map(|p| p.pid).collect(),
                    lastrun: record.lastrun,
                    lasterror: record.lasterror,
                    lasterror_msg: record.lasterror_msg,
                    failed: entry.failed.clone(),
                    queue: tables.queue(name),
                });
            }
        }
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        processes.sort_by_key(|p| p.pid);
        Snapshot {
            jobs,
            processes,
            pools,
        }
    }

    pub fn job(&self, name: &str) -> Option<&JobView> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The jobs `name` stands for: the job of that name, else every job of the group of that
    /// name (the scoreboard shows groups by name); empty when it is neither.
    pub fn jobs_named(&self, name: &str) -> Vec<&JobView> {
        match self.job(name) {
            Some(job) => vec![job],
            None => self.jobs.iter().filter(|j| j.pool == name).collect(),
        }
    }
}

/// Bytes as `12.3M` (MiB), `-` when unknown.
pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1}M", b as f64 / 1_048_576.0))
}

/// A CPU share in ‰ of a core as `4.5%`, `-` when unknown.
pub fn percent(permille: Option<u32>) -> String {
    permille.map_or("-".into(), |p| format!("{}.{}%", p / 10, p % 10))
}

/// `3s`, `5m`, `2h`, `4d`: short, for a title or a column.
pub fn short_duration(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl ProcessView {
    /// Its scoreboard letter: its job's custom state while it is busy (a stopping process
    /// shows `T` whatever its job says), else its state's.
    pub fn letter(&self) -> char {
        match (self.state, self.custom_state) {
            (ProcessState::Busy, Some(custom)) => custom.letter(),
            (state, _) => state.letter(),
        }
    }

    /// The custom state it shows, if it shows one (see [`ProcessView::letter`]).
    pub fn shown_custom_state(&self) -> Option<CustomState> {
        self.custom_state
            .filter(|_| self.state == ProcessState::Busy)
    }

    /// What it runs and for how long at `now_ms`: `mail H:host:12 3s`; `None` when it runs
    /// no job (a stopping process may still finish one). The handle is `-` when the process
    /// does not say it.
    pub fn current_job(&self, now_ms: i64) -> Option<(String, String, String)> {
        let function = self.function.clone()?;
        let handle = if self.handle.is_empty() {
            "-".to_string()
        } else {
            self.handle.clone()
        };
        Some((
            function,
            handle,
            short_duration((now_ms - self.job_started_ms) / 1000),
        ))
    }
}

/// UTC `YYYY-MM-DDTHH:MM:SS`; 0 is `1970-01-01T00:00:00`.
/// Values past the year 9999 (only a corrupted stats slot holds one) show as its last second.
pub fn utc(seconds: i64) -> String {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    let seconds = seconds.clamp(0, LAST) as u64;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.trim_end_matches('Z').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_without_zone() {
        assert_eq!(utc(0), "1970-01-01T00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20");
        assert_eq!(utc(-5), "1970-01-01T00:00:00");
        assert_eq!(utc(300_000_000_000), "9999-12-31T23:59:59");
        assert_eq!(utc(i64::MAX), "9999-12-31T23:59:59");
    }
}

//! The process table as everyone but the supervisor sees it: per pool its limits, its live
//! processes and whether the driver gave up on it; per job what the stats table reported
//! about processes that are gone (live processes are read from the stats table directly).
//!
//! The supervisor is the only writer: after every change it publishes a new immutable
//! snapshot (a `watch` of an `Arc`, copied on write), so a reader (a console command, the
//! host's stop path) sees every pool and job record of one moment, and never holds anything
//! the supervisor waits for. The host runs on one thread; nothing here needs a concurrent map.

use crate::stats::SlotSnapshot;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// One pool: a group of jobs, or a job on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEntry {
    /// The jobs (function names) its processes serve, sorted.
    pub jobs: Vec<String>,
    pub min: u32,
    pub max: u32,
    pub processes: Vec<ProcessEntry>,
    /// Why the driver stopped restarting the pool, when it did.
    pub failed: Option<String>,
    /// What its processes that exited did.
    pub exited: Totals,
}

/// Counts over a pool's processes that have exited (a live process's are in its slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub jobs_done: u64,
    pub jobs_failed: u64,
    pub durations: crate::stats::Durations,
    /// Processes that exited without being asked (crashed, or ended on their own): each was
    /// replaced as the limits asked.
    pub restarts: u64,
    /// Processes replaced for passing max_memory.
    pub memory_recycles: u64,
}

impl Totals {
    /// Adds a process's last slot.
    pub fn add_slot(&mut self, slot: &SlotSnapshot) {
        self.jobs_done += slot.jobs_done;
        self.jobs_failed += slot.jobs_failed;
        self.durations.add(&slot.durations);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    /// Its slots in the stats table: one per job it runs at once.
    pub slots: Vec<usize>,
    pub started_ms: i64,
    /// Told to stop; finishing its job.
    pub stopping: bool,
    /// Resident memory with its descendants', and CPU share (‰ of one core) over the last
    /// second, from the supervisor's last sample.
    pub rss_bytes: Option<u64>,
    pub cpu_permille: Option<u32>,
}

/// What the stats table said about a job's processes that have since exited (their slots
/// are reused), so lastrun and lasterror survive them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobRecord {
    pub pool: String,
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
}

impl JobRecord {
    /// Takes what a process's slot says about the job of `function` (its index in the
    /// pool's job list), if newer: the one rule, for exited and live processes alike.
    pub fn merge_slot(&mut self, function: u32, slot: &SlotSnapshot) {
        let lastrun = slot.lastrun_of(function);
        match slot.lasterror_function == Some(function) {
            true => self.merge(lastrun, slot.lasterror, &slot.lasterror_msg),
            false => self.merge(lastrun, 0, ""),
        }
    }

    /// Takes whatever is newer.
    pub fn merge(&mut self, lastrun: i64, lasterror: i64, lasterror_msg: &str) {
        self.lastrun = self.lastrun.max(lastrun);
        if lasterror > self.lasterror
            || (lasterror == self.lasterror && self.lasterror_msg.is_empty())
        {
            self.lasterror = lasterror;
            self.lasterror_msg = lasterror_msg.to_string();
        }
    }
}

/// One moment of the table: every pool and every job record, consistent with each other.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pools: BTreeMap<String, PoolEntry>,
    jobs: BTreeMap<String, JobRecord>,
    /// Per job, the jobs waiting and running on the job servers at the observer's last
    /// report (absent when no report could read them).
    queues: BTreeMap<String, (u64, u64)>,
}

impl Tables {
    /// Every pool, sorted by name.
    pub fn pools(&self) -> impl Iterator<Item = (&String, &PoolEntry)> {
        self.pools.iter()
    }

    pub fn job(&self, name: &str) -> Option<&JobRecord> {
        self.jobs.get(name)
    }

    /// Jobs of `name` waiting and running on the job servers, as last reported.
    pub fn queue(&self, name: &str) -> Option<(u64, u64)> {
        self.queues.get(name).copied()
    }

    /// The pool a job belongs to, or the pool (group) of that name.
    pub fn pool_of_job(&self, job: &str) -> Option<(&String, &PoolEntry)> {
        self.pools
            .iter()
            .find(|(name, pool)| *name == job || pool.jobs.iter().any(|j| j == job))
    }
}

/// The published table: the supervisor replaces the snapshot after every change; readers
/// take the current one.
#[derive(Debug)]
pub struct ProcessTable {
    current: watch::Sender<Arc<Tables>>,
    /// The supervisor's ticks: that it still runs (systemd's watchdog asks).
    beats: std::sync::atomic::AtomicU64,
}

impl Default for ProcessTable {
    fn default() -> ProcessTable {
        ProcessTable {
            current: watch::Sender::new(Arc::default()),
            beats: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ProcessTable {
    /// The supervisor's ticks so far.
    pub fn beats(&self) -> u64 {
        self.beats.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn beat(&self) {
        self.beats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The table as it is now; it does not change under the reader.
    pub fn current(&self) -> Arc<Tables> {
        self.current.borrow().clone()
    }

    fn change(&self, f: impl FnOnce(&mut Tables)) {
        self.current.send_modify(|tables| f(Arc::make_mut(tables)));
    }

    pub(super) fn set_pool(&self, name: &str, entry: PoolEntry) {
        self.change(|t| {
            t.pools.insert(name.to_string(), entry);
        });
    }

    pub(super) fn remove_pool(&self, name: &str) {
        self.change(|t| {
            t.pools.remove(name);
        });
    }

    pub(super) fn merge_job(
        &self,
        job: &str,
        pool: &str,
        lastrun: i64,
        lasterror: i64,
        message: &str,
    ) {
        self.change(|t| {
            let record = t.jobs.entry(job.to_string()).or_default();
            record.pool = pool.to_string();
            record.merge(lastrun, lasterror, message);
        });
    }

    /// Folds slots into the job records at once (one change of the table): each with its
    /// pool and the jobs its process serves, in its slot's numbering. The slots of processes
    /// that exited (their slots are reused), and those of live processes of groups.
    pub(super) fn merge_slots(
        &self,
        slots: Vec<(
            String,
            std::sync::Arc<[crate::config::JobConfig]>,
            SlotSnapshot,
        )>,
    ) {
        self.change(|t| {
            for (pool, jobs, slot) in &slots {
                for (index, job) in (0u32..).zip(jobs.iter()) {
                    let mentioned =
                        slot.lastrun_of(index) > 0 || slot.lasterror_function == Some(index);
                    if mentioned {
                        let record = t.jobs.entry(job.name.clone()).or_default();
                        record.pool = pool.clone();
                        record.merge_slot(index, slot);
                    }
                }
            }
        });
    }

    pub(super) fn set_queues(&self, queues: BTreeMap<String, (u64, u64)>) {
        self.change(|t| t.queues = queues);
    }

    pub(super) fn retain_jobs(&self, keep: impl Fn(&str) -> bool) {
        self.change(|t| t.jobs.retain(|name, _| keep(name)));
    }
}

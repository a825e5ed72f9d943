//! The process table as everyone but the supervisor sees it: per pool its limits, its live
//! processes and whether the driver gave up on it; per job what the stats table reported
//! about processes that are gone (live processes are read from the stats table directly).
//!
//! The supervisor is the only writer. Console connections and the observer read entries
//! concurrently and independently, which is what a concurrent map is for; readers get
//! clones and never hold a guard.

use dashmap::DashMap;

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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    /// Its slot in the stats table.
    pub slot: usize,
    pub started_ms: i64,
    /// Told to stop; finishing its job.
    pub stopping: bool,
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
    /// Takes whatever is newer from `other`.
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

#[derive(Debug, Default)]
pub struct ProcessTable {
    pools: DashMap<String, PoolEntry>,
    jobs: DashMap<String, JobRecord>,
}

impl ProcessTable {
    pub fn pool(&self, name: &str) -> Option<PoolEntry> {
        self.pools.get(name).map(|e| e.clone())
    }

    /// Every pool, sorted by name.
    pub fn pools(&self) -> Vec<(String, PoolEntry)> {
        let mut all: Vec<(String, PoolEntry)> = self
            .pools
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn job(&self, name: &str) -> Option<JobRecord> {
        self.jobs.get(name).map(|e| e.clone())
    }

    /// The pool a job belongs to, or the pool (group) of that name.
    pub fn pool_of_job(&self, job: &str) -> Option<(String, PoolEntry)> {
        self.pools
            .iter()
            .find(|e| e.key() == job || e.value().jobs.iter().any(|j| j == job))
            .map(|e| (e.key().clone(), e.value().clone()))
    }

    /// Whether `pid` is one of ours, and of which pool.
    pub fn pool_of_pid(&self, pid: u32) -> Option<String> {
        self.pools
            .iter()
            .find(|e| e.value().processes.iter().any(|p| p.pid == pid))
            .map(|e| e.key().clone())
    }

    pub(super) fn set_pool(&self, name: &str, entry: PoolEntry) {
        self.pools.insert(name.to_string(), entry);
    }

    pub(super) fn remove_pool(&self, name: &str) {
        self.pools.remove(name);
    }

    pub(super) fn merge_job(
        &self,
        job: &str,
        pool: &str,
        lastrun: i64,
        lasterror: i64,
        message: &str,
    ) {
        let mut record = self.jobs.entry(job.to_string()).or_default();
        record.pool = pool.to_string();
        record.merge(lastrun, lasterror, message);
    }

    pub(super) fn retain_jobs(&self, keep: impl Fn(&str) -> bool) {
        self.jobs.retain(|name, _| keep(name));
    }
}

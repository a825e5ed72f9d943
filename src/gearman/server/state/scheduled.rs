//! Jobs with a time (SUBMIT_JOB_EPOCH, or restored with `when_to_run`): they wait in
//! `State::scheduled` until their second comes, then join their queue like a new job and
//! wake its workers. `status` counts them as queued, as gearmand does.

use super::{State, slot};

/// Seconds since the epoch, now.
pub(super) fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl State {
    /// Queues every job whose time has come; called before a hand-out and by the server's
    /// clock.
    pub fn release_due(&mut self) {
        let now = now_epoch();
        while let Some(&(when, job_id)) = self.scheduled.first() {
            if when > now {
                break;
            }
            self.scheduled.pop_first();
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            let (function, priority) = (job.function.clone(), job.priority);
            let f = self.functions.entry(function.clone()).or_default();
            f.scheduled = f.scheduled.saturating_sub(1);
            f.queues[slot(priority)].push_back(job_id);
            self.ready.insert(function.clone());
            self.wake(&function);
        }
    }
}

//! A job's life in the built-in server: submission (unique ids, queue limits, the byte
//! budget), hand-out to a worker, WORK_* relayed to its clients, completion, expiry and
//! failure after its retries.

use super::scheduled::now_epoch;
use super::{
    ConnId, Effect, Job, JobId, MAX_UNIQUE, NotFound, State, StoredJob, error, not_found, slot,
};
use crate::gearman::codec::ServerOutbound;
use crate::gearman::packet::{Packet, Priority};
use bytes::Bytes;
use std::time::Duration;

/// A job as a client submits it.
pub(super) struct Submission {
    pub priority: Priority,
    pub background: bool,
    pub function: Bytes,
    pub unique: Bytes,
    pub data: Bytes,
    /// Seconds since the epoch before which it is not handed out; 0 = at once.
    pub when: i64,
}

impl State {
    pub(super) fn submit(
        &mut self,
        id: ConnId,
        submission: Submission,
        effects: &mut Vec<Effect>,
    ) -> Packet {
        let Submission {
            priority,
            background,
            function,
            unique,
            data,
            when,
        } = submission;
        if unique.len() > MAX_UNIQUE {
            return error("ARGUMENT_TOO_LARGE", "Unique value too large");
        }
        if !unique.is_empty() {
            if let Some(&existing) = self.uniques.get(&(function.clone(), unique.clone())) {
                let job = self.jobs.get_mut(&existing).expect("indexed");
                // A background submission keeps the job alive when its foreground clients
                // leave (gearmand drops it, and with it a job its submitter was promised).
                job.background |= background;
                let handle = job.handle.clone();
                if background {
                    self.store(existing, &handle, effects);
                } else {
                    job.clients.push(id);
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.waiting.push(existing);
                    }
                }
                return Packet::JobCreated { handle };
            }
        }
        let f = self.functions.entry(function.clone()).or_default();
        // As gearmand does: the priority's limit against all the function's jobs, queued and
        // running.
        let limit = f.max_queue[slot(priority)];
        if limit > 0 && i64::try_from(f.queued() + f.running).unwrap_or(i64::MAX) >= limit {
            return error("QUEUE_ERROR", "Job queue is full");
        }
        let handle = Bytes::from(format!("{}{}", self.handle_prefix, self.next_handle));
        self.next_handle += 1;
        f.submitted += 1;
        let mut job = Job::new(handle.clone(), function, unique, data, priority, when);
        job.background = background;
        if !background {
            job.clients.push(id);
        }
        let job_id = self.add(job);
        if background {
            self.store(job_id, &handle, effects);
        } else if let Some(conn) = self.conns.get_mut(&id) {
            conn.waiting.push(job_id);
        }
        Packet::JobCreated { handle }
    }

    /// A job from the persistent queue, queued again as it was submitted.
    pub(super) fn restore(&mut self, stored: StoredJob) {
        let key = (stored.function.clone(), stored.unique.clone());
        if self.uniques.contains_key(&key) {
            return; // the file's primary key makes this impossible; keep the first
        }
        let handle = Bytes::from(format!("{}{}", self.handle_prefix, self.next_handle));
        self.next_handle += 1;
        let mut job = Job::new(
            handle,
            stored.function,
            stored.unique.clone(),
            stored.data,
            stored.priority,
            stored.when,
        );
        job.background = true;
        job.stored = Some(stored.unique);
        self.add(job);
    }

    /// Indexes a new job and queues it (or schedules it, when its time is ahead).
    fn add(&mut self, mut job: Job) -> JobId {
        let job_id = self.next_job;
        self.next_job += 1;
        job.seq = job_id;
        if !job.unique.is_empty() {
            self.uniques
                .insert((job.function.clone(), job.unique.clone()), job_id);
            self.by_unique
                .entry(job.unique.clone())
                .or_default()
                .push(job_id);
        }
        self.handles.insert(job.handle.clone(), job_id);
        let function = job.function.clone();
        let f = self.functions.entry(function.clone()).or_default();
        if job.when > now_epoch() {
            f.scheduled += 1;
            self.scheduled.insert((job.when, job_id));
            self.jobs.insert(job_id, job);
        } else {
            f.queues[slot(job.priority)].push_back(job_id);
            self.ready.insert(function.clone());
            self.jobs.insert(job_id, job);
            self.wake(&function);
        }
        job_id
    }

    /// Writes a background job to the persistent queue, if there is one and it is not there
    /// yet; its JOB_CREATED waits for the write.
    fn store(&mut self, job_id: JobId, handle: &Bytes, effects: &mut Vec<Effect>) {
        let Some(queue) = &self.queue else { return };
        let job = self.jobs.get_mut(&job_id).expect("exists");
        if job.stored.is_some() {
            return;
        }
        let key = if job.unique.is_empty() {
            self.next_key += 1;
            Bytes::from(format!("{}-{}", self.key_prefix, self.next_key))
        } else {
            job.unique.clone()
        };
        let stored = queue.add(StoredJob {
            unique: key.clone(),
            function: job.function.clone(),
            priority: job.priority,
            data: job.data.clone(),
            when: job.when,
        });
        job.stored = Some(key);
        effects.push(Effect::Stored {
            handle: handle.clone(),
            stored,
        });
    }

    /// A job the persistent queue could not store: its client is refused, so it is dropped
    /// unless a worker already has it.
    pub fn unstored(&mut self, handle: &Bytes) {
        let Some(&job_id) = self.handles.get(handle) else {
            return;
        };
        let job = self.jobs.get_mut(&job_id).expect("indexed");
        job.stored = None;
        if job.worker.is_none() && job.clients.is_empty() {
            self.remove(job_id);
        }
    }

    /// Whether a job waits for one of the connection's functions.
    pub(super) fn has_work_for(&self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        let waits = |function: &Bytes| {
            self.functions
                .get(function)
                .is_some_and(|f| f.queues.iter().flatten().any(|j| !self.jobs[j].cancelled))
        };
        // Whichever is fewer: the functions with queued jobs, or the worker's.
        if self.ready.len() < conn.abilities.len() {
            self.ready
                .iter()
                .any(|f| conn.can.contains_key(f) && waits(f))
        } else {
            conn.abilities.iter().any(|a| waits(&a.function))
        }
    }

    /// Hands the connection the best job it can do: highest priority first, then the oldest,
    /// across all its functions. Cancelled jobs met at a queue's head are dropped. One pass
    /// over the worker's functions: each offers the head of its highest non-empty priority.
    pub(super) fn take(&mut self, id: ConnId, effects: &mut Vec<Effect>) -> Option<JobId> {
        self.release_due();
        loop {
            let conn = self.conns.get(&id)?;
            // (priority slot, arrival, function, timeout): the smallest wins.
            let mut best: Option<(usize, u64, &Bytes, Option<Duration>)> = None;
            // Whichever is fewer: the functions with queued jobs, or the worker's.
            if self.ready.len() < conn.abilities.len() {
                for function in &self.ready {
                    if let Some((function, &timeout)) = conn.can.get_key_value(function) {
                        offer(self, function, timeout, &mut best);
                    }
                }
            } else {
                for ability in &conn.abilities {
                    offer(self, &ability.function, ability.timeout, &mut best);
                }
            }
            let (p, _, function, timeout) = best?;
            let function = function.clone();
            let f = self.functions.get_mut(&function).expect("has a queue");
            let job_id = f.queues[p].pop_front().expect("has a head");
            if f.queues.iter().all(std::collections::VecDeque::is_empty) {
                self.ready.remove(&function);
            }
            if self.jobs[&job_id].cancelled {
                self.remove(job_id);
                continue;
            }
            f.running += 1;
            let job = self.jobs.get_mut(&job_id).expect("queued");
            job.worker = Some(id);
            job.assignment += 1;
            if let Some(after) = timeout {
                effects.push(Effect::Timeout {
                    job: job_id,
                    assignment: job.assignment,
                    after,
                });
            }
            self.conns
                .get_mut(&id)
                .expect("exists")
                .running
                .push(job_id);
            return Some(job_id);
        }
    }

    /// Sends `make(exceptions)` to every client waiting for the job.
    pub(super) fn relay(&mut self, job: JobId, make: impl Fn(bool) -> Packet) {
        let clients = self.jobs[&job].clients.clone();
        for client in clients {
            let exceptions = self.conns.get(&client).is_some_and(|c| c.exceptions);
            self.send(client, make(exceptions));
        }
    }

    /// The job `handle` names, if connection `id` is the worker running it. Only that worker
    /// may report on a job: anyone else gets JOB_NOT_FOUND, as from gearmand.
    pub(super) fn held_by(&self, id: ConnId, handle: &Bytes) -> Option<JobId> {
        self.handles
            .get(handle)
            .copied()
            .filter(|job| self.jobs[job].worker == Some(id))
    }

    pub(super) fn relay_or_not_found(
        &mut self,
        id: ConnId,
        handle: &Bytes,
        out: &mut Vec<ServerOutbound>,
        missing: NotFound,
        make: impl Fn(bool) -> Packet,
    ) {
        match self.held_by(id, handle) {
            Some(job) => self.relay(job, make),
            None => out.push(ServerOutbound::Packet(not_found(missing))),
        }
    }

    /// The job's final packet to its clients (`completed`: WORK_COMPLETE, else a failure),
    /// then the job is gone.
    pub(super) fn finish(
        &mut self,
        id: ConnId,
        handle: &Bytes,
        out: &mut Vec<ServerOutbound>,
        missing: NotFound,
        completed: bool,
        make: impl Fn(bool) -> Packet,
    ) {
        match self.held_by(id, handle) {
            Some(job) => {
                self.count_end(job, completed);
                self.relay(job, make);
                self.remove(job);
            }
            None => out.push(ServerOutbound::Packet(not_found(missing))),
        }
    }

    /// Counts a job's end on its function: completed, or failed.
    fn count_end(&mut self, job: JobId, completed: bool) {
        let Some(f) = self
            .jobs
            .get(&job)
            .and_then(|j| self.functions.get_mut(&j.function))
        else {
            return;
        };
        match completed {
            true => f.completed += 1,
            false => f.failed += 1,
        }
    }

    /// Forgets a job everywhere (and in the persistent queue).
    pub(super) fn remove(&mut self, job_id: JobId) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        if let (Some(queue), Some(key)) = (&self.queue, &job.stored) {
            queue.done(key.clone(), job.function.clone());
        }
        if self.scheduled.remove(&(job.when, job_id)) {
            if let Some(f) = self.functions.get_mut(&job.function) {
                f.scheduled = f.scheduled.saturating_sub(1);
            }
        }
        self.handles.remove(&job.handle);
        if !job.unique.is_empty() {
            let key = (job.function.clone(), job.unique.clone());
            if self.uniques.get(&key) == Some(&job_id) {
                self.uniques.remove(&key);
            }
            if let Some(ids) = self.by_unique.get_mut(&job.unique) {
                ids.retain(|&id| id != job_id);
                if ids.is_empty() {
                    self.by_unique.remove(&job.unique);
                }
            }
        }
        if let Some(f) = self.functions.get_mut(&job.function) {
            if job.worker.is_some() {
                f.running = f.running.saturating_sub(1);
            } else {
                f.queues[slot(job.priority)].retain(|&j| j != job_id);
                if f.queues.iter().all(std::collections::VecDeque::is_empty) {
                    self.ready.remove(&job.function);
                }
            }
        }
        if let Some(worker) = job.worker.and_then(|w| self.conns.get_mut(&w)) {
            worker.running.retain(|&j| j != job_id);
        }
        for client in job.clients {
            if let Some(conn) = self.conns.get_mut(&client) {
                conn.waiting.retain(|&j| j != job_id);
            }
        }
    }

    /// A job's time ran out on the assignment `assignment`: it fails (CAN_DO_TIMEOUT).
    pub fn expire(&mut self, job: JobId, assignment: u64) {
        let Some(j) = self.jobs.get(&job) else { return };
        if j.worker.is_none() || j.assignment != assignment {
            return;
        }
        tracing::info!(handle = %String::from_utf8_lossy(&j.handle), "job server: a job overran its worker's CAN_DO_TIMEOUT; failing it");
        self.fail_job(job, "timeout: the job overran its worker's CAN_DO_TIMEOUT");
    }

    /// Fails a job the server gives up on: its clients get the reason as WORK_WARNING, then
    /// WORK_FAIL (the form every client library understands), and the job is gone.
    pub(super) fn fail_job(&mut self, job: JobId, reason: &str) {
        let handle = self.jobs[&job].handle.clone();
        self.count_end(job, false);
        let reason = Bytes::copy_from_slice(reason.as_bytes());
        self.relay(job, |_| Packet::WorkWarning {
            handle: handle.clone(),
            data: reason.clone(),
        });
        self.relay(job, |_| Packet::WorkFail {
            handle: handle.clone(),
        });
        self.remove(job);
    }
}

/// The best job `function` offers a worker (the head of its highest non-empty priority),
/// kept in `best` when it beats what is there: (priority slot, arrival, function, timeout).
fn offer<'a>(
    state: &State,
    function: &'a Bytes,
    timeout: Option<Duration>,
    best: &mut Option<(usize, u64, &'a Bytes, Option<Duration>)>,
) {
    let Some(f) = state.functions.get(function) else {
        return;
    };
    let Some((p, &head)) = f
        .queues
        .iter()
        .enumerate()
        .find_map(|(p, q)| q.front().map(|h| (p, h)))
    else {
        return;
    };
    let seq = state.jobs[&head].seq;
    if best.is_none_or(|(bp, bs, _, _)| (p, seq) < (bp, bs)) {
        *best = Some((p, seq, function, timeout));
    }
}

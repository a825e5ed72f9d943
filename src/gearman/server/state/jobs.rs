//! A job's life in the built-in server: submission (unique ids, queue limits, the byte
//! budget), hand-out to a worker, WORK_* relayed to its clients, completion, expiry and
//! failure after its retries.

use super::{
    ConnId, Effect, Job, JobId, MAX_UNIQUE, NotFound, PRIORITIES, State, error, not_found, slot,
};
use crate::gearman::codec::ServerOutbound;
use crate::gearman::packet::{Packet, Priority};
use bytes::Bytes;
use std::time::Duration;

impl State {
    pub(super) fn submit(
        &mut self,
        id: ConnId,
        priority: Priority,
        background: bool,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
    ) -> Packet {
        if unique.len() > MAX_UNIQUE {
            return error("ARGUMENT_TOO_LARGE", "Unique value too large");
        }
        if !unique.is_empty() {
            if let Some(&existing) = self.uniques.get(&(function.clone(), unique.clone())) {
                let job = self.jobs.get_mut(&existing).expect("indexed");
                // A background submission keeps the job alive when its foreground clients
                // leave (gearmand drops it, and with it a job its submitter was promised).
                job.background |= background;
                if !background {
                    job.clients.push(id);
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.waiting.push(existing);
                    }
                }
                return Packet::JobCreated {
                    handle: job.handle.clone(),
                };
            }
        }
        let f = self.functions.entry(function.clone()).or_default();
        // As gearmand does: the priority's limit against all the function's jobs, queued and
        // running.
        let limit = f.max_queue[slot(priority)];
        if limit > 0 && i64::try_from(f.queued() + f.running).unwrap_or(i64::MAX) >= limit {
            return error("QUEUE_ERROR", "Job queue is full");
        }
        let job_id = self.next_job;
        self.next_job += 1;
        let handle = Bytes::from(format!("{}{}", self.handle_prefix, self.next_handle));
        self.next_handle += 1;
        f.queues[slot(priority)].push_back(job_id);
        if !unique.is_empty() {
            self.uniques
                .insert((function.clone(), unique.clone()), job_id);
        }
        self.handles.insert(handle.clone(), job_id);
        self.jobs.insert(
            job_id,
            Job {
                handle: handle.clone(),
                function: function.clone(),
                unique,
                data,
                priority,
                background,
                clients: if background { Vec::new() } else { vec![id] },
                worker: None,
                numerator: 0,
                denominator: 0,
                retries: 0,
                cancelled: false,
                seq: job_id,
                assignment: 0,
            },
        );
        if !background {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.waiting.push(job_id);
            }
        }
        self.wake(&function);
        Packet::JobCreated { handle }
    }

    /// Whether a job waits for one of the connection's functions.
    pub(super) fn has_work_for(&self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        conn.abilities.iter().any(|a| {
            self.functions
                .get(&a.function)
                .is_some_and(|f| f.queues.iter().flatten().any(|j| !self.jobs[j].cancelled))
        })
    }

    /// Hands the connection the best job it can do: highest priority first, then the oldest,
    /// across all its functions. Cancelled jobs met at a queue's head are dropped.
    pub(super) fn take(&mut self, id: ConnId, effects: &mut Vec<Effect>) -> Option<JobId> {
        let conn = self.conns.get(&id)?;
        let abilities: Vec<(Bytes, Option<Duration>)> = conn
            .abilities
            .iter()
            .map(|a| (a.function.clone(), a.timeout))
            .collect();
        for priority in PRIORITIES {
            let p = slot(priority);
            loop {
                let mut best: Option<(u64, &Bytes, Option<Duration>)> = None;
                for (function, timeout) in &abilities {
                    if let Some(&head) = self
                        .functions
                        .get(function)
                        .and_then(|f| f.queues[p].front())
                    {
                        let seq = self.jobs[&head].seq;
                        if best.is_none_or(|(s, _, _)| seq < s) {
                            best = Some((seq, function, *timeout));
                        }
                    }
                }
                let Some((_, function, timeout)) = best else {
                    break; // nothing at this priority: try the next one
                };
                let function = function.clone();
                let f = self.functions.get_mut(&function).expect("has a queue");
                let job_id = f.queues[p].pop_front().expect("has a head");
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
        None
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

    /// The job's final packet to its clients, then the job is gone.
    pub(super) fn finish(
        &mut self,
        id: ConnId,
        handle: &Bytes,
        out: &mut Vec<ServerOutbound>,
        missing: NotFound,
        make: impl Fn(bool) -> Packet,
    ) {
        match self.held_by(id, handle) {
            Some(job) => {
                self.relay(job, make);
                self.remove(job);
            }
            None => out.push(ServerOutbound::Packet(not_found(missing))),
        }
    }

    /// Forgets a job everywhere.
    pub(super) fn remove(&mut self, job_id: JobId) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        self.handles.remove(&job.handle);
        if !job.unique.is_empty() {
            let key = (job.function.clone(), job.unique.clone());
            if self.uniques.get(&key) == Some(&job_id) {
                self.uniques.remove(&key);
            }
        }
        if let Some(f) = self.functions.get_mut(&job.function) {
            if job.worker.is_some() {
                f.running = f.running.saturating_sub(1);
            } else {
                f.queues[slot(job.priority)].retain(|&j| j != job_id);
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

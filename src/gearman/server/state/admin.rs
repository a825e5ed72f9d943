//! The admin half of the job server: the text commands (`status`, `workers`, `show jobs`,
//! `maxqueue`, `create function` …) against the state, in gearmand's formats.

use super::{Job, State};
use crate::gearman::admin::{
    AdminCommand, AdminError, AdminReply, FunctionStatus, JobRow, MaxQueueLimits, PriorityRow,
    WorkerRow,
};
use crate::gearman::packet::Packet;
use bytes::Bytes;

impl State {
    /// Runs a text admin command; the reply is the exact bytes to write.
    pub fn admin(&mut self, line: &str) -> Bytes {
        let command = match AdminCommand::parse(line) {
            Ok(command) => command,
            Err(e) => return Bytes::from(e.to_wire()),
        };
        let reply = match command {
            AdminCommand::Status => AdminReply::Status(
                self.functions
                    .iter()
                    .map(|(name, f)| FunctionStatus {
                        function: String::from_utf8_lossy(name).into_owned(),
                        total: (f.queued() + f.running) as u64,
                        running: f.running as u64,
                        available_workers: f.workers as u64,
                    })
                    .collect(),
            ),
            AdminCommand::PriorityStatus => AdminReply::PriorityStatus(
                self.functions
                    .iter()
                    .map(|(name, f)| PriorityRow {
                        function: String::from_utf8_lossy(name).into_owned(),
                        high: f.queues[0].len() as u64,
                        normal: f.queues[1].len() as u64,
                        low: f.queues[2].len() as u64,
                        workers: f.workers as u64,
                    })
                    .collect(),
            ),
            AdminCommand::Workers => AdminReply::Workers(
                self.conns
                    .values()
                    .map(|c| WorkerRow {
                        fd: c.fd.to_string(),
                        address: c.ip.to_string(),
                        client_id: c
                            .client_id
                            .as_ref()
                            .map(|id| String::from_utf8_lossy(id).into_owned()),
                        functions: c
                            .abilities
                            .iter()
                            .rev()
                            .map(|a| String::from_utf8_lossy(&a.function).into_owned())
                            .collect(),
                    })
                    .collect(),
            ),
            AdminCommand::ShowJobs => AdminReply::ShowJobs(
                self.jobs_in_order()
                    .map(|j| JobRow {
                        handle: String::from_utf8_lossy(&j.handle).into_owned(),
                        retries: u64::from(j.retries),
                        ignore_job: j.cancelled,
                        // gearmand's flag: set when queued, cleared only by a cancel (a running
                        // job still shows 1).
                        job_queued: !j.cancelled,
                    })
                    .collect(),
            ),
            AdminCommand::ShowUniqueJobs => AdminReply::ShowUniqueJobs(
                self.jobs_in_order()
                    .map(|j| String::from_utf8_lossy(&j.unique).into_owned())
                    .collect(),
            ),
            AdminCommand::Version => AdminReply::Version(self.version.clone()),
            AdminCommand::Getpid => AdminReply::Pid(std::process::id()),
            AdminCommand::MaxQueue { function, limits } => {
                let limits = match limits {
                    MaxQueueLimits::Default => [0; 3],
                    MaxQueueLimits::All(n) => [n; 3],
                    MaxQueueLimits::PerPriority { high, normal, low } => [high, normal, low],
                };
                // As gearmand: a function that does not exist yet is not created, and the
                // limit is dropped (say `create function` first).
                if let Some(f) = self.functions.get_mut(function.as_bytes()) {
                    f.max_queue = limits;
                }
                AdminReply::Ok
            }
            // gearmand's default level name; this server's logging follows `loglevel`.
            AdminCommand::Verbose => AdminReply::Verbose("ERROR".into()),
            AdminCommand::CreateFunction { function } => {
                self.functions.entry(Bytes::from(function)).or_default();
                AdminReply::Ok
            }
            AdminCommand::DropFunction { function } => {
                let Some(f) = self.functions.get(function.as_bytes()) else {
                    return Bytes::from_static(b"ERR function not found\r\n");
                };
                // gearmand drops a function with queued jobs and orphans them; here they
                // keep it alive.
                if f.workers > 0 || f.running > 0 || f.queued() > 0 {
                    return Bytes::from_static(
                        b"ERR there are still connected workers or executing clients\r\n",
                    );
                }
                self.functions.remove(function.as_bytes());
                AdminReply::Ok
            }
            AdminCommand::CancelJob { handle } => {
                match self.handles.get(handle.as_bytes()).copied() {
                    None => return Bytes::from(AdminError::new("UNKNOWN_JOB", "").to_wire()),
                    Some(job) if self.jobs[&job].worker.is_some() => {
                        return Bytes::from(AdminError::new("UNKNOWN_ERROR", "").to_wire());
                    }
                    Some(job) => {
                        // Like gearmand, the job is marked and dropped when it reaches the head of
                        // its queue; unlike it, clients waiting for it are told now.
                        let handle = self.jobs[&job].handle.clone();
                        self.relay(job, |_| Packet::WorkFail {
                            handle: handle.clone(),
                        });
                        let j = self.jobs.get_mut(&job).expect("indexed");
                        j.cancelled = true;
                        // Cancelled for good: a restart must not bring it back.
                        if let (Some(queue), Some(key)) = (&self.queue, j.stored.take()) {
                            queue.done(key, j.function.clone());
                        }
                        for client in std::mem::take(&mut j.clients) {
                            if let Some(conn) = self.conns.get_mut(&client) {
                                conn.waiting.retain(|&w| w != job);
                            }
                        }
                        AdminReply::Ok
                    }
                }
            }
        };
        Bytes::from(reply.to_wire())
    }

    fn jobs_in_order(&self) -> impl Iterator<Item = &Job> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs.into_iter()
    }
}

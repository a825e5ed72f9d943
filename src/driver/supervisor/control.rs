//! Requests from the console and the signal handlers: `set_processes` and friends, `kill`,
//! `killall`. Each is answered through its reply channel.

use super::Supervisor;
use crate::driver::{Control, ControlError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

impl Supervisor {
    pub(super) fn on_control(&mut self, control: Control) {
        match control {
            Control::Reload { config, reply } => {
                self.apply_config(config);
                let _ = reply.send(Ok(()));
            }
            Control::SetLimits {
                job,
                min,
                max,
                reply,
            } => {
                let _ = reply.send(self.set_limits(&job, min, max));
            }
            Control::Kill { pids, reply } => {
                let mut ours = 0;
                for pid in pids {
                    if let Some(name) = self.pool_of_pid(pid) {
                        ours += 1;
                        // Not a stop request: the process is replaced like any that died.
                        if let Some(p) = self
                            .pools
                            .get_mut(&name)
                            .and_then(|pool| pool.processes.get_mut(&pid))
                        {
                            p.operator_stopped = true;
                        }
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        tracing::info!(pid, job = %name, "Process killed");
                    }
                }
                let _ = reply.send(if ours == 0 {
                    Err(ControlError::NotOurs)
                } else {
                    Ok(())
                });
            }
            Control::KillAll { jobs, reply } => {
                let _ = reply.send(self.kill_all(&jobs));
            }
            Control::Replace { jobs, since, reply } => {
                self.replace(&jobs, since);
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// A new generation for the pools of `jobs`: their processes stop once their job is
    /// done, and new ones, started at once, take their place. A group is replaced once,
    /// however many of its jobs changed.
    fn replace(&mut self, jobs: &[(String, String)], since: std::time::Instant) {
        let mut done: Vec<String> = Vec::new();
        for (job, why) in jobs {
            let Some(name) = self.pool_of_job(job) else {
                continue;
            };
            if done.contains(&name) {
                continue;
            }
            let pool = self.pools.get_mut(&name).expect("found");
            // A reload for the same change (a file came) may have replaced them already.
            let fresh = pool
                .processes
                .values()
                .filter(|p| p.stop_requested.is_none())
                .all(|p| p.started >= since);
            if fresh && !pool.processes.is_empty() {
                done.push(name);
                continue;
            }
            tracing::info!(job = %name, changed = %why, "code changed; replacing its processes");
            pool.generation += 1;
            pool.crash.reset();
            self.stop_older_generations(&name);
            self.reconcile(&name, None);
            done.push(name);
        }
    }

    pub(super) fn pool_of_pid(&self, pid: u32) -> Option<String> {
        self.pools
            .iter()
            .find(|(_, pool)| pool.processes.contains_key(&pid))
            .map(|(name, _)| name.clone())
    }

    /// The pool serving job `job`, or the pool (group) of that name: the scoreboard shows
    /// groups by name, so they are addressed by it too.
    pub(super) fn pool_of_job(&self, job: &str) -> Option<String> {
        self.pools
            .iter()
            .find(|(name, pool)| {
                !pool.removed && (*name == job || pool.config.jobs.iter().any(|j| j.name == job))
            })
            .map(|(name, _)| name.clone())
    }

    pub(super) fn set_limits(
        &mut self,
        job: &str,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<(), ControlError> {
        let name = self
            .pool_of_job(job)
            .ok_or_else(|| ControlError::NoSuchJob(job.to_string()))?;
        let pool = self.pools.get_mut(&name).expect("found");
        let new_min = min.unwrap_or(pool.min);
        let new_max = max.unwrap_or(pool.max);
        // Gearman::Driver's checks: a new max is checked against the min; a new min alone
        // against the max.
        match (min, max) {
            (_, Some(_)) if new_max < new_min => return Err(ControlError::MaxBelowMin),
            (Some(_), None) if new_min > new_max => return Err(ControlError::MinAboveMax),
            _ => {}
        }
        let others: u64 = self
            .pools
            .iter()
            .filter(|(n, p)| **n != name && !p.removed)
            .map(|(_, p)| u64::from(p.max) * u64::from(p.config.limits.concurrency))
            .sum();
        let concurrency = self.pools[&name].config.limits.concurrency;
        let total = others + u64::from(new_max) * u64::from(concurrency);
        if total > self.stats.capacity() as u64 {
            return Err(ControlError::TooManyProcesses {
                total,
                limit: self.stats.capacity(),
            });
        }
        let pool = self.pools.get_mut(&name).expect("found");
        pool.min = new_min;
        pool.max = new_max;
        if min.is_some() && max.is_some() {
            pool.crash.reset();
        }
        self.reconcile(&name, None);
        Ok(())
    }

    pub(super) fn kill_all(&mut self, jobs: &[String]) -> Result<(), ControlError> {
        let names: Vec<String> = if jobs.iter().any(|j| j == "*") {
            self.pools
                .iter()
                .filter(|(_, p)| !p.removed)
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            jobs.iter()
                .map(|j| {
                    self.pool_of_job(j)
                        .ok_or_else(|| ControlError::NoSuchJob(j.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        for name in names {
            let pool = self.pools.get_mut(&name).expect("listed");
            pool.crash.reset();
            for (&pid, p) in pool.processes.iter_mut() {
                if p.stop_requested.is_none() {
                    p.operator_stopped = true;
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                    tracing::info!(pid, job = %name, "Process killed");
                }
            }
            self.reconcile(&name, None);
        }
        Ok(())
    }
}

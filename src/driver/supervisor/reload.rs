//! A reload: the new config is compared with the pools, pool by pool.

use super::{Pool, Supervisor};
use crate::config::{Config, JobConfig, PoolConfig, ProcessLimits};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Supervisor {
    /// Applies a new config: removed pools stop, added ones start, changed ones are
    /// restarted (or only get new limits), unchanged ones are left alone. Every pool's
    /// crash-loop state is reset.
    pub(super) fn apply_config(&mut self, config: Arc<Config>) {
        let servers_changed = config.driver.job_servers != self.config.driver.job_servers;
        let mut incoming: BTreeMap<String, PoolConfig> = config
            .pools()
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let pool = self.pools.get_mut(&name).expect("listed");
            pool.crash.set_first_delay(config.driver.restart_delay);
            pool.crash.reset();
            match incoming.remove(&name) {
                None => {
                    if !pool.removed {
                        tracing::info!(job = %name, "removed from the config; stopping its processes");
                        pool.removed = true;
                        let pids: Vec<u32> = pool.processes.keys().copied().collect();
                        for pid in pids {
                            self.request_stop(&name, pid);
                        }
                        if self.pools[&name].processes.is_empty() {
                            self.pools.remove(&name);
                            self.table.remove_pool(&name);
                        }
                    }
                }
                Some(new) => {
                    let restart =
                        pool.removed || servers_changed || shape(&pool.config) != shape(&new);
                    let limits_changed = pool.config.limits.min_processes
                        != new.limits.min_processes
                        || pool.config.limits.max_processes != new.limits.max_processes;
                    // Limits set from the console outlive a reload that leaves the config's
                    // limits of the job as they were; a change in the file wins.
                    let console_limits = !pool.removed
                        && (pool.min, pool.max)
                            != (
                                pool.config.limits.min_processes,
                                pool.config.limits.max_processes,
                            );
                    if restart {
                        tracing::info!(job = %name, "changed in the config; replacing its processes");
                        pool.generation += 1;
                    } else if limits_changed || pool.config != new {
                        tracing::info!(job = %name, min = new.limits.min_processes, max = new.limits.max_processes, "new limits from the config");
                    }
                    if console_limits && !limits_changed {
                        tracing::info!(job = %name, min = pool.min, max = pool.max, "keeping the limits set from the console: the config's did not change");
                    } else {
                        pool.min = new.limits.min_processes;
                        pool.max = new.limits.max_processes;
                    }
                    pool.removed = false;
                    pool.config = new;
                    self.stop_older_generations(&name);
                }
            }
        }
        for (name, new) in incoming {
            tracing::info!(job = %name, "added to the config");
            self.pools
                .insert(name, Pool::new(new, config.driver.restart_delay));
        }
        self.config = config;
        self.published.send_replace(self.config.clone());
        let keep: Vec<String> = self.config.jobs.iter().map(|j| j.name.clone()).collect();
        self.table.retain_jobs(|job| keep.iter().any(|k| k == job));
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            self.reconcile(&name, None);
        }
    }
}

/// Everything about a pool that its running processes were started with: when it changes,
/// they are replaced. Limits (min, max, idle time, spares) are applied in place.
fn shape(pool: &PoolConfig) -> (Vec<JobConfig>, Option<u64>, Option<Duration>) {
    let jobs = pool
        .jobs
        .iter()
        .map(|j| JobConfig {
            limits: ProcessLimits {
                min_processes: 0,
                max_processes: 0,
                max_idle_time: Duration::ZERO,
                min_spare: 0,
                max_spare: None,
                ..j.limits.clone()
            },
            ..j.clone()
        })
        .collect();
    (jobs, pool.limits.max_jobs, pool.limits.max_lifetime)
}

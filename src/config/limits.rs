//! The six process settings (min/max processes, idle time, spares, max_jobs, max_lifetime) as
//! a job entry gives them, and their resolution into [`super::ProcessLimits`]: the same for a
//! job on its own and for a group, whose members' settings are merged first.

use super::validate::{optional_seconds, seconds};
use super::{ProcessLimits, RawJob, defaults};
use std::time::Duration;

/// The six process settings as a job entry gives them (each optional).
#[derive(Clone, Debug, Default)]
pub(super) struct RawLimits {
    min_processes: Option<u32>,
    max_processes: Option<u32>,
    max_idle_time: Option<f64>,
    min_spare: Option<u32>,
    max_jobs: Option<u64>,
    max_lifetime: Option<f64>,
}

impl RawLimits {
    /// Each setting by name, as written (for naming a conflict between group members).
    pub(super) fn given(&self) -> [(&'static str, Option<String>); 6] {
        fn text<T: ToString>(value: Option<T>) -> Option<String> {
            value.map(|v| v.to_string())
        }
        [
            ("min_processes", text(self.min_processes)),
            ("max_processes", text(self.max_processes)),
            ("max_idle_time", text(self.max_idle_time)),
            ("min_spare", text(self.min_spare)),
            ("max_jobs", text(self.max_jobs)),
            ("max_lifetime", text(self.max_lifetime)),
        ]
    }

    /// What `self` gives, and `other` where `self` is silent.
    pub(super) fn or(self, other: &RawLimits) -> RawLimits {
        RawLimits {
            min_processes: self.min_processes.or(other.min_processes),
            max_processes: self.max_processes.or(other.max_processes),
            max_idle_time: self.max_idle_time.or(other.max_idle_time),
            min_spare: self.min_spare.or(other.min_spare),
            max_jobs: self.max_jobs.or(other.max_jobs),
            max_lifetime: self.max_lifetime.or(other.max_lifetime),
        }
    }

    /// With the defaults filled in and the rules checked; `at` names the job or group.
    pub(super) fn resolve(
        &self,
        at: &str,
        default_idle: Duration,
    ) -> Result<ProcessLimits, String> {
        let key = |k: &str| format!("{at}: {k}");
        let min_processes = self.min_processes.unwrap_or(defaults::MIN_PROCESSES);
        let max_processes = self
            .max_processes
            .unwrap_or(defaults::max_processes(min_processes));
        if max_processes < min_processes {
            return Err(format!(
                "{at}: max_processes ({max_processes}) must be >= min_processes ({min_processes})"
            ));
        }
        let min_spare = self.min_spare.unwrap_or(defaults::MIN_SPARE);
        if min_spare > max_processes {
            return Err(format!(
                "{at}: min_spare ({min_spare}) cannot exceed max_processes ({max_processes})"
            ));
        }
        Ok(ProcessLimits {
            min_processes,
            max_processes,
            max_idle_time: match self.max_idle_time {
                Some(v) => seconds(&key("max_idle_time"), v)?,
                None => default_idle,
            },
            min_spare,
            max_jobs: self.max_jobs.filter(|n| *n > 0),
            max_lifetime: optional_seconds(&key("max_lifetime"), self.max_lifetime)?,
        })
    }
}

impl RawJob {
    pub(super) fn limits(&self) -> RawLimits {
        RawLimits {
            min_processes: self.min_processes,
            max_processes: self.max_processes,
            max_idle_time: self.max_idle_time,
            min_spare: self.min_spare,
            max_jobs: self.max_jobs,
            max_lifetime: self.max_lifetime,
        }
    }
}

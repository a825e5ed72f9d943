//! The process settings (min/max processes, idle time, spares, max_jobs, max_lifetime,
//! max_memory) as
//! a job entry gives them, and their resolution into [`super::ProcessLimits`]: the same for a
//! job on its own and for a group, whose members' settings are merged first.

use super::validate::{optional_seconds, seconds};
use super::{ProcessLimits, RawJob, RawSize, defaults};
use std::time::Duration;

/// The most jobs one process may run at once.
pub const MAX_CONCURRENCY: u32 = 1000;

/// The six process settings as a job entry gives them (each optional).
#[derive(Clone, Debug, Default)]
pub(super) struct RawLimits {
    min_processes: Option<u32>,
    max_processes: Option<u32>,
    max_idle_time: Option<f64>,
    min_spare: Option<u32>,
    max_spare: Option<u32>,
    max_jobs: Option<u64>,
    max_lifetime: Option<f64>,
    pub(super) max_memory: Option<RawSize>,
    concurrency: Option<u32>,
}

impl RawLimits {
    /// Each setting by name, as written (for naming a conflict between group members).
    pub(super) fn given(&self) -> [(&'static str, Option<String>); 9] {
        fn text<T: ToString>(value: Option<T>) -> Option<String> {
            value.map(|v| v.to_string())
        }
        [
            ("min_processes", text(self.min_processes)),
            ("max_processes", text(self.max_processes)),
            ("max_idle_time", text(self.max_idle_time)),
            ("min_spare", text(self.min_spare)),
            ("max_spare", text(self.max_spare)),
            ("max_jobs", text(self.max_jobs)),
            ("max_lifetime", text(self.max_lifetime)),
            (
                "max_memory",
                self.max_memory.as_ref().map(|m| match m {
                    RawSize::Bytes(n) => n.to_string(),
                    RawSize::Text(t) => t.clone(),
                }),
            ),
            ("concurrency", text(self.concurrency)),
        ]
    }

    /// What `self` gives, and `other` where `self` is silent.
    pub(super) fn or(self, other: &RawLimits) -> RawLimits {
        RawLimits {
            min_processes: self.min_processes.or(other.min_processes),
            max_processes: self.max_processes.or(other.max_processes),
            max_idle_time: self.max_idle_time.or(other.max_idle_time),
            min_spare: self.min_spare.or(other.min_spare),
            max_spare: self.max_spare.or(other.max_spare),
            max_jobs: self.max_jobs.or(other.max_jobs),
            max_lifetime: self.max_lifetime.or(other.max_lifetime),
            max_memory: self.max_memory.or(other.max_memory.clone()),
            concurrency: self.concurrency.or(other.concurrency),
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
        if let Some(max_spare) = self.max_spare {
            if max_spare < min_spare || max_spare > max_processes {
                return Err(format!(
                    "{at}: max_spare ({max_spare}) must be between min_spare ({min_spare}) and max_processes ({max_processes})"
                ));
            }
        }
        let concurrency = self.concurrency.unwrap_or(1);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "{at}: concurrency = {concurrency}: give 1 (one job at a time, the default) up to {MAX_CONCURRENCY} jobs per process"
            ));
        }
        Ok(ProcessLimits {
            concurrency,
            min_processes,
            max_processes,
            max_idle_time: match self.max_idle_time {
                Some(v) => seconds(&key("max_idle_time"), v)?,
                None => default_idle,
            },
            min_spare,
            max_spare: self.max_spare,
            max_jobs: self.max_jobs.filter(|n| *n > 0),
            max_lifetime: optional_seconds(&key("max_lifetime"), self.max_lifetime)?,
            max_memory: match &self.max_memory {
                None => None,
                Some(size) => Some(bytes(&key("max_memory"), size)?),
            },
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
            max_spare: self.max_spare,
            max_jobs: self.max_jobs,
            max_lifetime: self.max_lifetime,
            max_memory: self.max_memory.clone(),
            concurrency: self.concurrency,
        }
    }
}

/// A size in bytes: a whole number, or text with a binary unit — `"512M"`, `"1.5G"`,
/// `"800KiB"`, `"2GB"` (K/M/G/T are 1024-based, as PM2's max_memory_restart and `ps` count).
pub(super) fn bytes(key: &str, size: &RawSize) -> Result<u64, String> {
    let bad = |text: &str| {
        format!(
            "{key} = {text:?} is not a size: write bytes, or a number with K, M, G or T (\"512M\")"
        )
    };
    let n = match size {
        RawSize::Bytes(n) => *n,
        RawSize::Text(text) => {
            let t = text.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let number: f64 = number.parse().map_err(|_| bad(text))?;
            let unit = unit.trim().to_ascii_uppercase();
            let unit = unit
                .strip_suffix("IB")
                .or_else(|| unit.strip_suffix('B'))
                .unwrap_or(&unit);
            let scale: u64 = match unit {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(bad(text)),
            };
            let n = number * scale as f64;
            if !n.is_finite() || n >= u64::MAX as f64 {
                return Err(bad(text));
            }
            n as u64
        }
    };
    if n == 0 {
        return Err(format!(
            "{key} must be more than 0 (leave it out for no limit)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        let text = |t: &str| bytes("k", &RawSize::Text(t.into()));
        assert_eq!(text("512M"), Ok(512 << 20));
        assert_eq!(text("512 MiB"), Ok(512 << 20));
        assert_eq!(text("1.5G"), Ok(3 << 29));
        assert_eq!(text("800kb"), Ok(800 << 10));
        assert_eq!(text("4096"), Ok(4096));
        assert_eq!(bytes("k", &RawSize::Bytes(1000)), Ok(1000));
        for bad in ["", "M", "12X", "-1M", "1e999G", "1.2.3M"] {
            let e = text(bad).unwrap_err();
            assert!(e.starts_with("k = "), "{bad}: {e}");
        }
        assert!(text("0M").unwrap_err().contains("more than 0"));
    }
}

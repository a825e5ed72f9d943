//! One file per console command: its [`CommandDef`](super::command::CommandDef) for `help`
//! and its handler.

pub mod auth;
pub mod help;
pub mod kill;
pub mod killall;
pub mod output;
pub mod quit;
pub mod reload;
pub mod scoreboard;
pub mod set_max_processes;
pub mod set_min_processes;
pub mod set_processes;
pub mod show;
pub mod shutdown;
pub mod status;
pub mod version;

use super::command::Reply;
use crate::driver::ControlError;

/// The reply for a job name the host does not have.
pub(crate) fn invalid_job(name: &str) -> Reply {
    Reply::error("invalid_job_name", name)
}

/// A process count as the console takes it: a whole number >= 0.
pub(crate) fn count(value: Option<&str>) -> Option<u32> {
    value?.parse().ok()
}

/// The reply for what the supervisor refused.
pub(crate) fn refused(error: ControlError) -> Reply {
    match error {
        ControlError::NoSuchJob(job) => invalid_job(&job),
        ControlError::MinAboveMax => Reply::error(
            "invalid_value",
            "min_processes must be smaller than max_processes",
        ),
        ControlError::MaxBelowMin => Reply::error(
            "invalid_value",
            "max_processes must be greater than min_processes",
        ),
        ControlError::NotOurs => {
            Reply::error("invalid_value", "the given PID(s) do not belong to us")
        }
        error @ ControlError::TooManyProcesses { .. } => {
            Reply::error("invalid_value", error.to_string())
        }
        ControlError::ShuttingDown => Reply::error("shutting_down", "the host is stopping"),
        ControlError::Config(message) => Reply::error("invalid_config", message),
    }
}

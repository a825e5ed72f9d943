//! Every default, in one place: what a key left out means.

pub const INTERVAL_SECS: f64 = 5.0;
pub const MAX_IDLE_TIME_SECS: f64 = 30.0;
pub const SHUTDOWN_TIMEOUT_SECS: f64 = 30.0;
pub const RESTART_DELAY_SECS: f64 = 0.5;
/// Lines of recent output kept per worker process.
pub const OUTPUT_BUFFER: u32 = 100;
pub const LOGLEVEL: &str = "info";
pub const CONSOLE_LISTEN: &str = "127.0.0.1:47300";
/// Where the HTTP endpoint (metrics, JSON API, status page) listens unless told.
pub const HTTP_LISTEN: &str = "127.0.0.1:47301";
pub const CONSOLE_IDLE_TIMEOUT_SECS: f64 = 300.0;
pub const CONSOLE_AUTH_TIMEOUT_SECS: f64 = 5.0;
pub const CONSOLE_MAX_CONNECTIONS: u32 = 64;
pub const SERVER_LISTEN: &str = "127.0.0.1:4730";
pub const JOB_RETRIES: u32 = crate::gearman::server::DEFAULT_JOB_RETRIES;
pub const CODEC: &str = "raw";
pub const MIN_PROCESSES: u32 = 1;
pub const MIN_SPARE: u32 = 0;

/// An unset max_processes follows min_processes (at least one).
pub fn max_processes(min_processes: u32) -> u32 {
    min_processes.max(1)
}
/// Prefetch for plugin workers (command workers: off, their jobs cost a process each).
pub const PREFETCH: bool = true;

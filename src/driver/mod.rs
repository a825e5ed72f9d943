//! The driver: keeps the right worker processes alive for every job. It knows nothing of the
//! console, the observer or the built-in job server; [`crate::host`] wires them together.
//!
//! Parts and who owns what:
//! - `supervisor`: the one owner of the pools and their processes (spawn, reap, restart,
//!   scale, reload, stop); it publishes a [`ProcessTable`] for everyone else;
//! - `process`: starting one process and turning its output and exit into log lines and
//!   events; `output`: every process's recent output, for the console and the API;
//!   `scaling` and `backoff`: the pure decisions;
//! - [`HostHandle`]: how the console, the signal handlers and the observer reach the
//!   supervisor (events in, the process table, the stats table and the config out);
//! - the stats table (`crate::stats`) is written by the worker processes themselves.
//!
//! Stop order: SIGTERM/SIGINT (or a console `shutdown`) cancels the shutdown token; the
//! observer stops; the supervisor asks every process to finish its job and exit, kills what
//! is left after `shutdown_timeout`, and returns once everything is reaped; then the
//! pidfile is removed (the stats table, a memfd, goes with the last process holding it).

pub mod backoff;
pub mod events;
pub mod output;
mod process;
pub mod scaling;
mod supervisor;
pub mod table;

pub use process::{PROGRAM_JOB_VAR, PROGRAM_SERVERS_VAR};
pub use table::{JobRecord, PoolEntry, ProcessEntry, ProcessTable};

use crate::config::{Config, ConfigError};
use crate::plugin::Registry;
use crate::stats::StatsTable;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use supervisor::Supervisor;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How many processes the stats table has room for: the most any config or console change
/// may ask for. Every slot is allocated at start (about 1.5 MB).
pub const STATS_CAPACITY: usize = crate::config::MAX_PROCESSES;

/// What the supervisor hears about.
pub enum Event {
    /// A process was reaped.
    Exited {
        pool: String,
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
    /// The job servers' queues, from the observer.
    Queues(QueueReport),
    /// A request from the console or a signal handler.
    Control(Control),
}

/// Jobs waiting per function, summed over the job servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueReport {
    /// waiting = total − running, per function.
    pub waiting: HashMap<String, u64>,
    /// Jobs being worked on, per function.
    pub running: HashMap<String, u64>,
    /// Every job server answered.
    pub complete: bool,
}

/// Requests that change what the supervisor does.
pub enum Control {
    Reload {
        config: Arc<Config>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    SetLimits {
        job: String,
        min: Option<u32>,
        max: Option<u32>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Kill {
        pids: Vec<u32>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    KillAll {
        jobs: Vec<String>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// Replace the processes of these jobs gracefully (each finishes its job first): their
    /// code changed. Each job comes with what changed, for the log.
    Replace {
        jobs: Vec<(String, String)>,
        /// When the change was seen: a pool whose processes all started since (a reload
        /// replaced them) is left alone.
        since: std::time::Instant,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
}

impl Control {
    fn refuse(self, error: ControlError) {
        let reply = match self {
            Control::Reload { reply, .. }
            | Control::SetLimits { reply, .. }
            | Control::Kill { reply, .. }
            | Control::KillAll { reply, .. }
            | Control::Replace { reply, .. } => reply,
        };
        let _ = reply.send(Err(error));
    }
}

/// Why the supervisor refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such job: {0}")]
    NoSuchJob(String),
    #[error("min_processes must be smaller than max_processes")]
    MinAboveMax,
    #[error("max_processes must be greater than min_processes")]
    MaxBelowMin,
    #[error("the given PID(s) do not belong to us")]
    NotOurs,
    #[error(
        "the jobs' max_processes would add up to {total}, more than the {limit} one host can run (a process with concurrency N counts N)"
    )]
    TooManyProcesses { total: u64, limit: usize },
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Config(String),
}

/// A handle on a running host, for the console and the signal handlers.
#[derive(Clone)]
pub struct HostHandle {
    events: mpsc::UnboundedSender<Event>,
    table: Arc<ProcessTable>,
    stats: Arc<StatsTable>,
    /// The config in force, as the supervisor (its one owner) publishes it.
    config: watch::Receiver<Arc<Config>>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    /// The config the host started with: its ports and secret stay until a restart.
    started_with: Arc<Config>,
    /// Every process's recent output (written by the readers of its pipes).
    output: output::OutputBuffers,
}

impl HostHandle {
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn stats(&self) -> &StatsTable {
        &self.stats
    }

    /// Every process's recent output, and that of processes that exited lately.
    pub fn output(&self) -> &output::OutputBuffers {
        &self.output
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Where the observer sends its queue reports.
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }

    /// The config in force, as it changes with reloads.
    pub fn config_changes(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    /// Starts a graceful stop of the whole host.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), ControlError>>) -> Control,
    ) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::Control(make(tx)))
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.unwrap_or(Err(ControlError::ShuttingDown))
    }

    pub async fn set_limits(
        &self,
        job: &str,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<(), ControlError> {
        let job = job.to_string();
        self.ask(|reply| Control::SetLimits {
            job,
            min,
            max,
            reply,
        })
        .await
    }

    pub async fn kill(&self, pids: Vec<u32>) -> Result<(), ControlError> {
        self.ask(|reply| Control::Kill { pids, reply }).await
    }

    pub async fn kill_all(&self, jobs: Vec<String>) -> Result<(), ControlError> {
        self.ask(|reply| Control::KillAll { jobs, reply }).await
    }

    /// Replaces the processes of `jobs` (job name, what changed) gracefully, those started
    /// before `since`; a job the config no longer has is passed over.
    pub async fn replace(
        &self,
        jobs: Vec<(String, String)>,
        since: std::time::Instant,
    ) -> Result<(), ControlError> {
        self.ask(|reply| Control::Replace { jobs, since, reply })
            .await
    }

    /// Re-reads the config file; an invalid config is refused and the old one stays.
    pub async fn reload(&self) -> Result<(), ControlError> {
        let path = self.config().path.clone();
        let registry = self.registry.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path, &registry))
            .await
            .map_err(|e| ControlError::Config(e.to_string()))?;
        let config =
            Arc::new(loaded.map_err(|e: ConfigError| ControlError::Config(e.to_string()))?);
        for note in &config.notes {
            tracing::warn!("{note}");
        }
        let current = &self.started_with;
        if config.server != current.server
            || config.console != current.console
            || config.http != current.http
        {
            tracing::warn!(
                "[server], [console] and [http] changes take effect at the next start, not on reload"
            );
        }
        // The supervisor applies it and publishes it as the config in force.
        self.ask(|reply| Control::Reload { config, reply }).await
    }
}

/// Makes the supervisor and the handle everyone else uses to reach it. The returned future
/// is the supervisor: it runs until `shutdown` is cancelled, then stops every process (each
/// finishes its job, up to `shutdown_timeout`) and returns once all are reaped.
pub fn supervise(
    config: Arc<Config>,
    registry: Registry,
    exe: PathBuf,
    stats: Arc<StatsTable>,
    shutdown: CancellationToken,
) -> (HostHandle, impl std::future::Future<Output = ()>) {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let table = Arc::new(ProcessTable::default());
    let published = watch::Sender::new(config.clone());
    let output = output::OutputBuffers::default();
    let handle = HostHandle {
        events: events_tx.clone(),
        table: table.clone(),
        stats: stats.clone(),
        config: published.subscribe(),
        registry: Arc::new(registry),
        shutdown: shutdown.clone(),
        started_with: config.clone(),
        output: output.clone(),
    };
    let supervisor =
        Supervisor::new(config, published, exe, stats, events_tx, table).with_output(output);
    (handle, supervisor.run(events_rx, shutdown))
}

//! The host: keeps the right worker processes alive for every job.
//!
//! Parts and who owns what:
//! - `supervisor`: the one owner of the pools and their processes (spawn, reap, restart,
//!   scale, reload, stop); it publishes a [`ProcessTable`] for everyone else;
//! - `process`: starting one process and turning its output and exit into log lines and
//!   events; `scaling` and `backoff`: the pure decisions;
//! - the observer (`crate::observer`) polls the job servers and sends queue reports;
//! - the stats table (`crate::stats`) is written by the worker processes themselves.
//!
//! Stop order: SIGTERM/SIGINT (or a console `shutdown`) cancels the shutdown token; the
//! observer stops; the supervisor asks every process to finish its job and exit, kills what
//! is left after `shutdown_timeout`, and returns once everything is reaped; then the
//! pidfile is removed (the stats table, a memfd, goes with the last process holding it).

pub mod backoff;
mod pidfile;
mod process;
pub mod scaling;
mod supervisor;
pub mod table;

pub use process::{PROGRAM_JOB_VAR, PROGRAM_SERVERS_VAR};
pub use table::{JobRecord, PoolEntry, ProcessEntry, ProcessTable};

use crate::config::{Config, ConfigError};
use crate::plugin::Registry;
use crate::stats::{StatsError, StatsTable};
use pidfile::{Pidfile, PidfileError};
use std::collections::HashMap;
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
}

impl Control {
    fn refuse(self, error: ControlError) {
        let reply = match self {
            Control::Reload { reply, .. }
            | Control::SetLimits { reply, .. }
            | Control::Kill { reply, .. }
            | Control::KillAll { reply, .. } => reply,
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
        "the jobs' max_processes would add up to {total}, more than the {limit} one host can run"
    )]
    TooManyProcesses { total: u64, limit: usize },
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Config(String),
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error("cannot find the geardriver binary to start workers with: {0}")]
    Exe(std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen for the built-in job server on {addr}: {source}")]
    Server {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for the console on {addr}: {source}")]
    Console {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A handle on a running host, for the console and the signal handlers.
#[derive(Clone)]
pub struct HostHandle {
    events: mpsc::UnboundedSender<Event>,
    table: Arc<ProcessTable>,
    stats: Arc<StatsTable>,
    /// The config in force; reloads publish here.
    config: watch::Sender<Arc<Config>>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

impl HostHandle {
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn stats(&self) -> &StatsTable {
        &self.stats
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
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

    /// Re-reads the config file; an invalid config is refused and the old one stays.
    pub async fn reload(&self) -> Result<(), ControlError> {
        let path = self.config().path.clone();
        let registry = self.registry.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path, &registry))
            .await
            .map_err(|e| ControlError::Config(e.to_string()))?;
        let config =
            Arc::new(loaded.map_err(|e: ConfigError| ControlError::Config(e.to_string()))?);
        let current = self.config();
        if config.server != current.server || config.console != current.console {
            tracing::warn!(
                "[server] and [console] changes take effect at the next start, not on reload"
            );
        }
        let reply = self
            .ask(|reply| Control::Reload {
                config: config.clone(),
                reply,
            })
            .await;
        if reply.is_ok() {
            self.config.send_replace(config);
        }
        reply
    }
}

/// Runs the host until SIGTERM/SIGINT (or a console `shutdown`), then stops every process
/// and returns.
pub async fn run(config: Config, registry: Registry) -> Result<(), HostError> {
    let _pidfile = match &config.driver.pidfile {
        Some(path) => Some(Pidfile::acquire(path)?),
        None => None,
    };
    let exe = std::env::current_exe().map_err(HostError::Exe)?;
    let open_files = crate::limits::raise_open_files().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read or raise the open-files limit; assuming 1024");
        1024
    });
    // The job server first: the workers started next connect to it.
    let server = match config.server.enabled {
        false => None,
        true => {
            let addr = config.server.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Server { addr, source })?;
            let stop = CancellationToken::new();
            let defaults = crate::gearman::server::Settings::default();
            let processes = config
                .pools()
                .iter()
                .map(|p| p.max_processes as usize)
                .sum();
            let console = config
                .console
                .listen
                .map_or(0, |_| config.console.max_connections);
            let max_connections = crate::limits::server_connections(
                open_files,
                console,
                processes,
                defaults.max_connections,
            );
            let task = tokio::spawn(crate::gearman::server::run(
                listener,
                crate::gearman::server::Settings {
                    job_retries: config.server.job_retries,
                    max_connections,
                    ..defaults
                },
                stop.clone(),
            ));
            tracing::info!(%addr, open_files, max_connections, "built-in job server listening");
            Some((stop, task))
        }
    };
    let console = match config.console.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Console { addr, source })?,
        ),
        None => None,
    };
    let stats = Arc::new(StatsTable::create(STATS_CAPACITY)?);
    if let Some(dir) = &config.driver.stats_dir {
        tracing::warn!(stats_dir = %dir.display(), "stats_dir is ignored: the stats table is an anonymous memory file (memfd) now, in no directory");
    }
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let table = Arc::new(ProcessTable::default());
    let handle = HostHandle {
        events: events_tx.clone(),
        table: table.clone(),
        stats: stats.clone(),
        config: watch::Sender::new(config.clone()),
        registry: Arc::new(registry),
        shutdown: shutdown.clone(),
    };
    tracing::info!(
        pid = std::process::id(),
        config = %config.path.display(),
        jobs = config.jobs.len(),
        stats = %stats.proc_path().display(),
        "geardriver {} starting",
        env!("CARGO_PKG_VERSION")
    );

    let supervisor = Supervisor::new(config.clone(), exe, stats.clone(), events_tx.clone(), table);
    let supervised = tokio::spawn(supervisor.run(events_rx, shutdown.clone()));
    if let Some(listener) = console {
        let settings = crate::console::Settings {
            secret: config.console.secret.clone(),
            idle_timeout: config.console.idle_timeout,
            max_connections: config.console.max_connections,
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "console listening");
        }
        tokio::spawn(crate::console::run(
            listener,
            handle.clone(),
            settings,
            shutdown.clone(),
        ));
    }
    let mut observer = Observer::start(&config, events_tx.clone(), &shutdown);
    let signals = tokio::spawn(handle_signals(handle.clone())?);
    let mut config_changes = handle.config.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Ok(()) = config_changes.changed() => {
                // A reload may have changed what the observer watches.
                let current = config_changes.borrow_and_update().clone();
                observer.stop();
                observer = Observer::start(&current, events_tx.clone(), &shutdown);
            }
        }
    }
    tracing::info!("shutting down");
    observer.stop();
    let _ = supervised.await;
    // Only now: until every worker finished its job, they needed the job server.
    if let Some((stop, task)) = server {
        stop.cancel();
        let _ = task.await;
    }
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The running observer, if autoscaling is on.
struct Observer {
    stop: CancellationToken,
}

impl Observer {
    fn start(
        config: &Config,
        events: mpsc::UnboundedSender<Event>,
        shutdown: &CancellationToken,
    ) -> Observer {
        let stop = shutdown.child_token();
        if let Some(interval) = config.driver.interval {
            tokio::spawn(crate::observer::run(
                config.driver.job_servers.clone(),
                interval,
                events,
                stop.clone(),
            ));
        }
        Observer { stop }
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}

fn reopen_log(signal: &str) {
    match crate::logging::reopen() {
        Ok(Some(path)) => {
            tracing::info!(path = %path.display(), "{signal} received: log file reopened")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "{signal} received: cannot reopen the log file; still writing the old one")
        }
    }
}

/// SIGTERM/SIGINT: graceful stop. SIGHUP: reopen the log file and reload the config.
/// SIGUSR1: reopen the log file (for logrotate).
fn handle_signals(handle: HostHandle) -> Result<impl std::future::Future<Output = ()>, HostError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(HostError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(HostError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(HostError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(HostError::Signals)?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); handle.shutdown(); }
                _ = int.recv() => { tracing::info!("SIGINT received"); handle.shutdown(); }
                _ = usr1.recv() => reopen_log("SIGUSR1"),
                _ = hup.recv() => {
                    reopen_log("SIGHUP");
                    tracing::info!("SIGHUP received: reloading the config");
                    match handle.reload().await {
                        Ok(()) => tracing::info!("config reloaded"),
                        Err(e) => tracing::error!(error = %e, "reload refused; keeping the old config"),
                    }
                }
            }
        }
    })
}

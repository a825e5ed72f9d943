//! The composition root: `geardriver run` wires the parts together here and watches them.
//!
//! Parts: the built-in job server (first: the workers connect to it), the stats table, the
//! supervisor ([`crate::driver`]), the console, the observer and the signal handlers. Each is
//! a task; none may end on its own. If one does, or panics, the host does not carry on
//! headless (a console and a job server with nobody to serve): it logs which part ended and
//! why, stops every worker process (each finishes its job, up to `shutdown_timeout`) and
//! exits non-zero with that reason.
//!
//! Stop order: SIGTERM/SIGINT (or a console `shutdown`) cancels the shutdown token; the
//! observer and the console stop; the supervisor asks every process to finish its job and
//! exit, kills what is left after `shutdown_timeout` and returns once everything is reaped;
//! then the job server stops (until then the workers needed it) and the pidfile goes.

pub mod notify;
mod pidfile;
mod watch;

use crate::config::Config;
use crate::driver::{HostHandle, STATS_CAPACITY};
use crate::plugin::Registry;
use crate::stats::{StatsError, StatsTable};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pidfile::{Pidfile, PidfileError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the host could not start, or stopped on its own.
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
    #[error(transparent)]
    Queue(#[from] crate::gearman::server::queue::QueueError),
    #[error("cannot listen for the console on {addr}: {source}")]
    Console {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen for HTTP (metrics, API, status page) on {addr}: {source} (set [http] listen to another address, or \"\" to turn it off)"
    )]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the {part} {how}; the workers were stopped")]
    PartEnded { part: &'static str, how: String },
    #[error("cannot start the built-in job server's threads: {0}")]
    Runtime(std::io::Error),
}

/// The parts' tasks, by name.
#[derive(Default)]
struct Parts {
    running: FuturesUnordered<JoinHandleNamed>,
}

type JoinHandleNamed =
    std::pin::Pin<Box<dyn Future<Output = (&'static str, Result<(), tokio::task::JoinError>)>>>;

impl Parts {
    fn spawn(&mut self, part: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_on(&tokio::runtime::Handle::current(), part, task);
    }

    /// [`Parts::spawn`] on another runtime (the built-in job server's threads).
    fn spawn_on(
        &mut self,
        runtime: &tokio::runtime::Handle,
        part: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle: JoinHandle<()> = runtime.spawn(fault::inject(part, task));
        self.running
            .push(Box::pin(async move { (part, handle.await) }));
    }

    /// The next part to end, and how it ended.
    async fn next_ended(&mut self) -> Option<(&'static str, String)> {
        let (part, result) = self.running.next().await?;
        let how = match result {
            Ok(()) => "ended on its own".to_string(),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                format!("panicked: {message}")
            }
            Err(e) => format!("was cancelled: {e}"),
        };
        Some((part, how))
    }
}

/// Runs the host until SIGTERM/SIGINT (or a console `shutdown`), then stops every process
/// and returns; or until one of its parts ends, then stops every process and returns why.
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
    // Signal handlers before any port listens: whoever sees a port open may send SIGTERM.
    let notifier = notify::Notifier::from_env().map(Arc::new);
    let signals = handle_signals(notifier.clone())?;
    let server = match config.server.enabled {
        false => None,
        true => Some(bind_server(&config, open_files).await?),
    };
    let console = match config.console.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Console { addr, source })?,
        ),
        None => None,
    };
    let http = match config.http.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Http { addr, source })?,
        ),
        None => None,
    };
    let started = std::time::Instant::now();
    let stats = Arc::new(StatsTable::create(STATS_CAPACITY)?);
    if let Some(dir) = &config.driver.stats_dir {
        tracing::warn!(stats_dir = %dir.display(), "stats_dir is ignored: the stats table is an anonymous memory file (memfd) now, in no directory");
    }
    let shutdown_timeout = config.driver.shutdown_timeout;
    let config = Arc::new(config);
    tracing::info!(
        pid = std::process::id(),
        config = %config.path.display(),
        jobs = config.jobs.len(),
        stats = %stats.proc_path().display(),
        "geardriver {} starting",
        env!("CARGO_PKG_VERSION")
    );

    for note in &config.notes {
        tracing::warn!("{note}");
    }
    let shutdown = CancellationToken::new();
    let (handle, supervisor) =
        crate::driver::supervise(config.clone(), registry, exe, stats, shutdown.clone());
    let mut parts = Parts::default();
    parts.spawn("supervisor", supervisor);
    let server_stop = CancellationToken::new();
    let server_started = server.is_some();
    let mut probe = None;
    // The built-in job server runs on threads of its own, one per CPU: the host's one thread
    // (supervisor, console, observer) neither slows it nor waits for it.
    let mut server_threads = None;
    if let Some((listener, settings, queue)) = server {
        let runtime = ServerThreads::start()?;
        let listener = {
            let _on = runtime.runtime().enter();
            let std = listener.into_std().map_err(HostError::Runtime)?;
            tokio::net::TcpListener::from_std(std).map_err(HostError::Runtime)?
        };
        let (server_probe, serving) =
            crate::gearman::server::start(listener, settings, queue, server_stop.clone());
        probe = Some(server_probe);
        parts.spawn_on(runtime.runtime().handle(), "built-in job server", serving);
        server_threads = Some(runtime);
    }
    if let Some(listener) = http {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "http listening (/metrics, /api/status, status page at /)");
        }
        let mut context =
            crate::http::Context::new(handle.clone(), probe, config.console.secret.as_deref());
        context.started = started;
        parts.spawn(
            "http endpoint",
            crate::http::run(listener, context, shutdown.clone()),
        );
    }
    if let Some(listener) = console {
        let settings = crate::console::Settings {
            secret: config.console.secret.clone(),
            idle_timeout: config.console.idle_timeout,
            auth_timeout: config.console.auth_timeout,
            max_connections: config.console.max_connections,
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "console listening");
        }
        parts.spawn(
            "console",
            crate::console::run(listener, handle.clone(), settings, shutdown.clone()),
        );
    }
    parts.spawn("observer", observe(handle.clone(), shutdown.clone()));
    parts.spawn("file watcher", watch::run(handle.clone(), shutdown.clone()));
    if let Some(notifier) = &notifier {
        notifier.ready(&format!("serving {} jobs", config.jobs.len()));
        if let Some(every) = notifier.watchdog() {
            tokio::spawn(watchdog(
                notifier.clone(),
                handle.clone(),
                every,
                shutdown.clone(),
            ));
        }
    }
    parts.spawn("signal handler", signals(handle.clone()));

    // Biased: the console and the observer end when the shutdown token is cancelled, and
    // that is not a failure.
    let failure = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        Some(ended) = parts.next_ended() => Some(ended),
    };
    if let Some((part, how)) = &failure {
        tracing::error!("the {part} {how}; stopping every worker and exiting");
    }
    tracing::info!("shutting down");
    if let Some(notifier) = &notifier {
        notifier.send("STOPPING=1\nSTATUS=stopping: every process finishes its job");
    }
    shutdown.cancel();
    let supervisor_gone = failure
        .as_ref()
        .is_some_and(|(part, _)| *part == "supervisor");
    if supervisor_gone {
        stop_orphaned_workers(&handle, shutdown_timeout).await;
    } else {
        // The supervisor returns once every process is reaped; the console and the observer
        // end with the shutdown token; the others wait for their turn.
        while let Some((part, how)) = parts.next_ended().await {
            match part {
                "supervisor" => break,
                "console" | "observer" | "http endpoint" | "file watcher" => {}
                _ => tracing::error!("the {part} {how} while the host was stopping"),
            }
        }
    }
    // Only now: until every worker finished its job, they needed the job server.
    server_stop.cancel();
    let server_failed = failure
        .as_ref()
        .is_some_and(|(part, _)| *part == "built-in job server");
    if server_started && !server_failed {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((part, _)) = parts.next_ended().await {
                if part == "built-in job server" {
                    break;
                }
            }
        })
        .await;
    }
    // Its connections are closed by now (or were given 5 s); nothing to wait for.
    drop(server_threads);
    tracing::info!("stopped");
    match failure {
        None => Ok(()),
        Some((part, how)) => Err(HostError::PartEnded { part, how }),
    }
}

/// The built-in job server's runtime: a thread per CPU. Dropped without waiting (a runtime
/// may not block the host's async thread as it goes).
struct ServerThreads(Option<tokio::runtime::Runtime>);

impl ServerThreads {
    fn start() -> Result<ServerThreads, HostError> {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("job-server")
            .enable_all()
            .build()
            .map(|runtime| ServerThreads(Some(runtime)))
            .map_err(HostError::Runtime)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for ServerThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the built-in job server starts with: its port, its limits, and its persistent queue
/// (with the jobs it held).
type ServerStart = (
    tokio::net::TcpListener,
    crate::gearman::server::Settings,
    Option<(
        crate::gearman::server::queue::Queue,
        Vec<crate::gearman::server::queue::StoredJob>,
    )>,
);

/// Binds the built-in job server's port, with a connection cap that leaves descriptors for
/// the console and the worker processes, and opens its persistent queue.
/// The cap is worked out once, from the config's `max_processes` at start: a later raise (the
/// console, a reload) does not lower it, as the README's "Descriptors" says.
async fn bind_server(config: &Config, open_files: u64) -> Result<ServerStart, HostError> {
    let queue = match &config.server.queue {
        Some(path) => Some(crate::gearman::server::queue::Queue::open(
            path,
            config.server.queue_sync,
        )?),
        None => None,
    };
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HostError::Server { addr, source })?;
    let defaults = crate::gearman::server::Settings::default();
    let processes = config
        .pools()
        .iter()
        .map(|p| p.limits.max_processes as usize)
        .sum();
    let console = config
        .console
        .listen
        .map_or(0, |_| config.console.max_connections);
    let max_connections =
        crate::limits::server_connections(open_files, console, processes, defaults.max_connections);
    tracing::info!(%addr, open_files, max_connections, "built-in job server listening");
    Ok((
        listener,
        crate::gearman::server::Settings {
            job_retries: config.server.job_retries,
            max_connections,
            ..defaults
        },
        queue,
    ))
}

/// The supervisor is gone, so nobody owns the worker processes any more: each is asked to
/// finish its job and exit, and what is left after `shutdown_timeout` is killed with its
/// group. (Their reaper tasks still run, so none is left a zombie.)
async fn stop_orphaned_workers(handle: &HostHandle, timeout: Duration) {
    let groups: Vec<Pid> = handle
        .table()
        .current()
        .pools()
        .flat_map(|(_, pool)| &pool.processes)
        .map(|p| Pid::from_raw(p.pid as i32))
        .collect();
    for &group in &groups {
        let _ = nix::sys::signal::kill(group, Signal::SIGTERM);
    }
    let alive = |pid: Pid| nix::sys::signal::kill(pid, None).is_ok();
    let deadline = tokio::time::Instant::now() + timeout;
    while groups.iter().any(|&g| alive(g)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for group in groups {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// The observer, restarted on every reload (which may change what it watches); off while
/// `interval` is 0. Ends with the shutdown token.
async fn observe(handle: HostHandle, shutdown: CancellationToken) {
    let mut changes = handle.config_changes();
    loop {
        let config = changes.borrow_and_update().clone();
        let observer = async {
            match config.driver.interval {
                Some(interval) => {
                    crate::observer::run(
                        config.driver.job_servers.clone(),
                        interval,
                        handle.events(),
                        shutdown.clone(),
                    )
                    .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = observer => return,
        }
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
/// SIGUSR1: reopen the log file (for logrotate). Registered before anything starts, so that
/// an early signal is not lost; the returned function runs the handler.
fn handle_signals(
    notifier: Option<Arc<notify::Notifier>>,
) -> Result<impl FnOnce(HostHandle) -> SignalTask, HostError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(HostError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(HostError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(HostError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(HostError::Signals)?;
    Ok(move |handle: HostHandle| -> SignalTask {
        Box::pin(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM received"); handle.shutdown(); }
                    _ = int.recv() => { tracing::info!("SIGINT received"); handle.shutdown(); }
                    _ = usr1.recv() => reopen_log("SIGUSR1"),
                    _ = hup.recv() => {
                        reopen_log("SIGHUP");
                        tracing::info!("SIGHUP received: reloading the config");
                        if let Some(notifier) = &notifier {
                            notifier.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", notify::monotonic_usec()));
                        }
                        let status = match handle.reload().await {
                            Ok(()) => { tracing::info!("config reloaded"); "config reloaded".to_string() }
                            Err(e) => {
                                tracing::error!(error = %e, "reload refused; keeping the old config");
                                format!("reload refused, old config kept: {e}")
                            }
                        };
                        if let Some(notifier) = &notifier {
                            notifier.ready(&status);
                        }
                    }
                }
            }
        })
    })
}

type SignalTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Pings systemd's watchdog every half `every` while the supervisor ticks (it ticks five
/// times a second); once it has not ticked for a second (or half `every`, if longer), the
/// pings stop and systemd restarts the host.
/// It ends when the host begins to stop: systemd stops watching at `STOPPING=1`, and the
/// supervisor stops ticking while processes finish their jobs.
async fn watchdog(
    notifier: Arc<notify::Notifier>,
    handle: HostHandle,
    every: Duration,
    shutdown: CancellationToken,
) {
    let stuck_after = (every / 2).max(Duration::from_secs(1));
    let mut last = handle.table().beats();
    let mut changed = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = handle.table().beats();
        if now != last {
            last = now;
            changed = tokio::time::Instant::now();
        }
        if changed.elapsed() < stuck_after {
            notifier.send("WATCHDOG=1");
            warned = false;
        } else if !warned {
            tracing::error!(stuck_for = ?changed.elapsed(), "the supervisor has stopped ticking; no more pings for systemd's watchdog");
            warned = true;
        }
    }
}

/// Fault injection for the tests of this module's promise: in debug builds only,
/// `GEARDRIVER_FAULT=panic:PART` (or `end:PART`) makes that part panic (or return) a moment
/// after the host starts. Release builds have no such switch.
mod fault {
    use std::future::Future;

    #[cfg(debug_assertions)]
    pub async fn inject(part: &'static str, task: impl Future<Output = ()>) {
        let fault = std::env::var("GEARDRIVER_FAULT").unwrap_or_default();
        let (kind, target) = fault.split_once(':').unwrap_or(("", ""));
        if target != part {
            return task.await;
        }
        tokio::select! {
            () = task => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                if kind == "panic" {
                    panic!("injected fault (GEARDRIVER_FAULT={fault})");
                }
            }
        }
    }

    #[cfg(not(debug_assertions))]
    pub async fn inject(_part: &'static str, task: impl Future<Output = ()>) {
        task.await
    }
}

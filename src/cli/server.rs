//! `geardriver server`: only the built-in job server, in the foreground, until SIGTERM or
//! SIGINT. The address is `--listen`, else the config's `[server] listen`, else
//! 127.0.0.1:4730; `--job-retries`, `--queue` and `--queue-sync` likewise fall back on the
//! config's (a config named with `--config` or `$GEARDRIVER_CONFIG`, or without `--listen`,
//! ./config.toml), else 3, memory only, normal.

use super::{Outcome, ServerArgs};
use crate::config::Config;
use crate::gearman::server::{self, Settings};
use crate::plugin::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub fn run(args: ServerArgs, config: Option<PathBuf>, registry: &Registry) -> Outcome {
    let level = std::env::var("GEARDRIVER_LOG").unwrap_or_else(|_| "info".into());
    let _ = crate::logging::init_host(
        &crate::config::LogTarget::Stderr,
        &level,
        crate::config::LogFormat::Text,
    );
    let mut job_retries = args.job_retries;
    let mut queue = args.queue;
    let mut queue_sync = match args.queue_sync.as_deref() {
        None => None,
        Some(text) => match crate::gearman::server::queue::Sync::parse(text) {
            Some(sync) => Some(sync),
            None => {
                return Outcome::Usage(format!(
                    "--queue-sync must be \"normal\" or \"full\", not {text:?}"
                ));
            }
        },
    };
    let listen: Option<SocketAddr> = match args.listen {
        Some(given) => match given.replace("localhost:", "127.0.0.1:").parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                return Outcome::Usage(format!(
                    "--listen {given:?} is not an address of the form IP:PORT"
                ));
            }
        },
        None => None,
    };
    // A config named (--config, $GEARDRIVER_CONFIG) gives what the flags do not; without
    // --listen, ./config.toml does too if it exists. (With --listen and no config named, a
    // config.toml that happens to be in the directory is not read: its queue is not yours.)
    let path = Config::resolve_path(config.as_deref());
    let explicit = config.is_some() || std::env::var_os(crate::config::PATH_VAR).is_some();
    let mut addr = SocketAddr::from(([127, 0, 0, 1], crate::gearman::DEFAULT_PORT));
    if explicit || (listen.is_none() && path.exists()) {
        match Config::load(&path, registry) {
            Ok(config) => {
                job_retries = job_retries.or(Some(config.server.job_retries));
                queue = queue.or(config.server.queue);
                queue_sync = queue_sync.or(Some(config.server.queue_sync));
                addr = config.server.listen;
            }
            Err(e) => return Outcome::Usage(format!("{e} (or give --listen)")),
        }
    }
    let addr = listen.unwrap_or(addr);
    if let (None, Some(sync)) = (&queue, &args.queue_sync) {
        return Outcome::Usage(format!(
            "--queue-sync {sync} applies to a persistent queue, and there is none (jobs would \
             be kept in memory only): give --queue PATH, or [server] queue in the config"
        ));
    }
    // A thread per CPU: connections read, decode, encode and write in parallel; only the
    // change to the server's state (microseconds a packet) is serialised by its lock.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("job-server")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Failed(format!("cannot start the async runtime: {e}")),
    };
    let queue = match queue {
        Some(path) => {
            match crate::gearman::server::queue::Queue::open(&path, queue_sync.unwrap_or_default())
            {
                Ok(opened) => Some(opened),
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        }
        None => None,
    };
    let outcome = runtime.block_on(async {
        // Handlers first: a SIGTERM sent once the port listens must find them (a loaded
        // machine showed the default action ending the server without its last log lines).
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                return Outcome::Failed(format!("cannot handle signals: {e}"));
            }
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => return Outcome::Failed(format!("cannot listen on {addr}: {e}")),
        };
        tracing::info!(%addr, pid = std::process::id(), "job server listening");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.cancel();
        });
        let defaults = Settings::default();
        let open_files = crate::limits::raise_open_files().unwrap_or(1024);
        let settings = Settings {
            job_retries: job_retries.unwrap_or(server::DEFAULT_JOB_RETRIES),
            max_connections: crate::limits::server_connections(
                open_files,
                0,
                0,
                defaults.max_connections,
            ),
            ..defaults
        };
        tracing::info!(
            open_files,
            max_connections = settings.max_connections,
            "connection limit"
        );
        server::run_with_queue(listener, settings, queue, shutdown).await;
        tracing::info!("job server stopped");
        Outcome::Success
    });
    // The log is written by a thread: what the stop said must reach it before the exit.
    crate::logging::flush(std::time::Duration::from_secs(2));
    outcome
}

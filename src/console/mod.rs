//! The telnet-style admin console, compatible with Gearman::Driver::Console: a TCP listener
//! (127.0.0.1:47300 by default), one command per line, replies with CRLF line endings and a
//! `.` line after every reply (errors included; not after `quit`).
//!
//! - `line`: input lines, whatever bytes arrive; `command`: the command enum, `help`'s table
//!   and the reply type; `commands/`: one file per command; `snapshot`: what the read-only
//!   commands show.
//!
//! Every connection is bounded: a line cap, an idle timeout, a write timeout and a cap on
//! connections at once. A bad client gets an `ERR` line or is disconnected; the host does not
//! notice.

pub mod command;
pub mod commands;
pub mod line;
pub mod snapshot;

use crate::driver::HostHandle;
use command::{Command, Reply};
use commands::*;
use futures_util::StreamExt;
use line::{Line, LineCodec};
use snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Longest accepted line, in bytes.
pub const MAX_LINE: usize = 4096;

/// How the console treats its clients.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Required with `auth` before any other command, when set.
    pub secret: Option<String>,
    /// A client silent this long is disconnected.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves the console on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    host: HostHandle,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "console: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let refusal = Reply::error(
                "too_many_connections",
                format!("at most {} at once", settings.max_connections),
            );
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    stream.write_all(&refusal.render()),
                )
                .await;
            });
            continue;
        };
        let host = host.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracing::debug!(%peer, "console: client connected");
            tokio::select! {
                _ = serve(stream, &host, &settings) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
            tracing::debug!(%peer, "console: client gone");
        });
    }
}

/// One client, until it quits, goes quiet for too long or stops reading.
async fn serve(stream: TcpStream, host: &HostHandle, settings: &Settings) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = FramedRead::new(reader, LineCodec::new(MAX_LINE));
    let mut authenticated = settings.secret.is_none();
    loop {
        let line = match tokio::time::timeout(settings.idle_timeout, lines.next()).await {
            Err(_) => {
                let bye = Reply::error(
                    "timeout",
                    format!(
                        "no command for {} s; closing",
                        settings.idle_timeout.as_secs()
                    ),
                );
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), writer.write_all(&bye.render()))
                        .await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(line))) => line,
        };
        let reply = match line {
            Line::TooLong => Reply::error(
                "line_too_long",
                format!("lines are limited to {MAX_LINE} bytes"),
            ),
            Line::NotUtf8 => Reply::error("invalid_input", "the line is not UTF-8 text"),
            Line::Text(text) => {
                dispatch(Command::parse(&text), host, settings, &mut authenticated).await
            }
        };
        if reply == Reply::Close {
            return;
        }
        match tokio::time::timeout(settings.idle_timeout, writer.write_all(&reply.render())).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Runs one command for a client.
async fn dispatch(
    command: Command,
    host: &HostHandle,
    settings: &Settings,
    authenticated: &mut bool,
) -> Reply {
    if !*authenticated && !matches!(command, Command::Auth { .. } | Command::Quit) {
        return Reply::error("auth_required", "send \"auth SECRET\" first");
    }
    match command {
        Command::Status => status::run(&Snapshot::collect(host)),
        Command::Show { job } => show::run(&Snapshot::collect(host), job.as_deref()),
        Command::SetMinProcesses { job, value } => {
            set_min_processes::run(host, job.as_deref(), value.as_deref()).await
        }
        Command::SetMaxProcesses { job, value } => {
            set_max_processes::run(host, job.as_deref(), value.as_deref()).await
        }
        Command::SetProcesses { job, min, max } => {
            set_processes::run(host, job.as_deref(), min.as_deref(), max.as_deref()).await
        }
        Command::Kill { pids } => kill::run(host, &pids).await,
        Command::KillAll { jobs } => killall::run(host, &jobs).await,
        Command::Scoreboard => scoreboard::run(&Snapshot::collect(host)),
        Command::Reload => reload::run(host).await,
        Command::Shutdown => shutdown::run(host),
        Command::Version => version::run(),
        Command::Help => help::run(),
        Command::Auth { secret } => {
            let (reply, ok) = auth::run(settings.secret.as_deref(), secret.as_deref());
            *authenticated = ok;
            reply
        }
        Command::Quit => quit::run(),
        Command::Unknown(word) => Reply::error("unknown_command", word),
    }
}

//! The telnet-style admin console, compatible with Gearman::Driver::Console: a TCP listener
//! (127.0.0.1:47300 by default), one command per line, replies with CRLF line endings and a
//! `.` line after every reply (errors included; not after `quit`).
//!
//! - `line`: input lines, whatever bytes arrive; `command`: the command enum, `help`'s table
//!   and the reply type; `commands/`: one file per command; `snapshot`: what the read-only
//!   commands show; `slots`: who holds the `max_connections` slots, and who gives one up.
//!
//! Every connection is bounded: a line cap, an idle timeout, a write timeout and a cap on
//! connections at once. A bad client gets an `ERR` line or is disconnected; the host does not
//! notice.
//!
//! With a secret, a connection must authenticate within `auth_timeout` (5 s by default) or
//! it is closed. Until it has done something useful (with a secret, authenticate; without
//! one, send a command the console knows), a newcomer that finds every slot taken takes its
//! place (`slots`): idle sockets cannot lock the operator out, and a person typing at a
//! telnet prompt without a secret is not hurried. A
//! wrong secret is answered after [`AUTH_FAILURE_DELAY`], logged with the peer's address, and
//! the [`AUTH_ATTEMPTS`]th closes the connection.

pub mod command;
pub mod commands;
pub mod line;
pub mod slots;
pub mod snapshot;

use crate::driver::HostHandle;
use command::{Command, Reply};
use commands::*;
use futures_util::StreamExt;
use line::{Line, LineCodec};
use slots::{Admitted, Full, Place, Slots};
use snapshot::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Longest accepted line, in bytes.
pub const MAX_LINE: usize = 4096;
/// The wait before a wrong secret is answered: guessing goes at one try a second.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Wrong secrets one connection may send; the last closes it.
pub const AUTH_ATTEMPTS: u32 = 3;

/// How the console treats its clients.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Required with `auth` before any other command, when set.
    pub secret: Option<String>,
    /// A client silent this long is disconnected.
    pub idle_timeout: Duration,
    /// A client must do something useful this soon after connecting: authenticate, with a
    /// secret; else send a command the console knows.
    pub auth_timeout: Duration,
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
    let slots = Slots::new(settings.max_connections);
    let mut accept_errors = crate::logging::Throttle::new(Duration::from_secs(10));
    // A flood of connections is logged at a bounded rate too.
    let mut full = crate::logging::Throttle::new(Duration::from_secs(10));
    loop {
        let accepted = crate::limits::accept(&listener, &shutdown, &mut accept_errors, "console");
        let Some((mut stream, peer)) = accepted.await else {
            return;
        };
        let place = match slots.admit(peer) {
            Ok(Admitted { place, displaced }) => {
                if let Some(displaced) = displaced {
                    if let Some(held_back) = full.allow() {
                        tracing::warn!(%peer, %displaced, held_back, "console: every slot taken; closing the oldest connection that has done nothing yet for a new one");
                    }
                }
                place
            }
            Err(Full { max }) => {
                if let Some(held_back) = full.allow() {
                    tracing::warn!(%peer, held_back, "console: connection refused: every slot is held by a session");
                }
                let refusal =
                    Reply::error("too_many_connections", format!("at most {max} at once"));
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        stream.write_all(&refusal.render()),
                    )
                    .await;
                });
                continue;
            }
        };
        let host = host.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracing::debug!(%peer, "console: client connected");
            tokio::select! {
                _ = serve(stream, peer, &place, &host, &settings) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(place);
            tracing::debug!(%peer, "console: client gone");
        });
    }
}

/// One client, until it quits, goes quiet for too long, stops reading, or loses its `place`
/// to a newcomer before it did anything useful.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    place: &Place,
    host: &HostHandle,
    settings: &Settings,
) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = FramedRead::new(reader, LineCodec::new(MAX_LINE));
    let mut authenticated = settings.secret.is_none();
    let mut proven = false;
    let deadline = tokio::time::Instant::now() + settings.auth_timeout;
    let unproven = if settings.secret.is_some() {
        "has not authenticated"
    } else {
        "has sent no command"
    };
    let evicted = Reply::error(
        "too_many_connections",
        format!("every slot is taken and this connection {unproven}; closing it for a new one"),
    );
    let mut failures = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let wait = if proven || settings.secret.is_none() {
            settings.idle_timeout
        } else {
            left.min(settings.idle_timeout)
        };
        let next = tokio::select! {
            biased;
            _ = place.evicted().cancelled() => return goodbye(&mut writer, &evicted).await,
            next = tokio::time::timeout(wait, lines.next()) => next,
        };
        let line = match next {
            Err(_) => {
                let why = if !proven && settings.secret.is_some() && left <= settings.idle_timeout {
                    format!(
                        "not authenticated within {}; closing",
                        seconds(settings.auth_timeout)
                    )
                } else {
                    format!("no command for {}; closing", seconds(settings.idle_timeout))
                };
                return goodbye(&mut writer, &Reply::error("timeout", why)).await;
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
            Line::Text(text) => match Command::parse(&text) {
                Command::Auth { secret } if settings.secret.is_some() => {
                    let (reply, ok) = auth::run(settings.secret.as_deref(), secret.as_deref());
                    if ok {
                        authenticated = true;
                        proven = true;
                        place.prove();
                        reply
                    } else {
                        failures += 1;
                        tracing::warn!(%peer, attempt = failures, "console: failed auth");
                        tokio::select! {
                            biased;
                            _ = place.evicted().cancelled() => return goodbye(&mut writer, &evicted).await,
                            _ = tokio::time::sleep(AUTH_FAILURE_DELAY) => {}
                        }
                        if failures >= AUTH_ATTEMPTS {
                            let bye = Reply::error(
                                "auth_failed",
                                format!("wrong secret {AUTH_ATTEMPTS} times; closing"),
                            );
                            return goodbye(&mut writer, &bye).await;
                        }
                        reply
                    }
                }
                command => {
                    let known = !matches!(command, Command::Unknown(_));
                    let reply = dispatch(command, host, settings, &mut authenticated).await;
                    // Without a secret, a command the console knows is what makes a
                    // connection worth its slot.
                    if known && authenticated && !proven {
                        proven = true;
                        place.prove();
                    }
                    reply
                }
            },
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

/// A last `ERR` line before the connection closes, if the client takes it within a second.
async fn goodbye(writer: &mut tokio::net::tcp::OwnedWriteHalf, reply: &Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&reply.render())).await;
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
        Command::Status { extended } => status::run(&Snapshot::collect(host), extended),
        Command::Show { job, extended } => {
            show::run(&Snapshot::collect(host), job.as_deref(), extended)
        }
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
        Command::Output { pid, lines } => output::run(host, pid.as_deref(), lines.as_deref()),
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

/// A duration as the console says it: `5 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

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
//!
//! With a secret, a client that has not authenticated is held to more: it must `auth` within
//! `auth_timeout` (5 s by default); each address may have [`UNAUTHENTICATED_PER_ADDRESS`] such connections at
//! once, and all of them together leave a quarter of the slots to authenticated clients; a
//! wrong secret is answered after [`AUTH_FAILURE_DELAY`], logged with the peer's address, and
//! the [`AUTH_ATTEMPTS`]th closes the connection.

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
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Longest accepted line, in bytes.
pub const MAX_LINE: usize = 4096;
/// Unauthenticated connections one address may hold at once.
pub const UNAUTHENTICATED_PER_ADDRESS: usize = 4;
/// The wait before a wrong secret is answered: guessing goes at one try a second.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Wrong secrets one connection may send; the last closes it.
pub const AUTH_ATTEMPTS: u32 = 3;

/// Who has not authenticated yet, per address (only when a secret is set).
#[derive(Default)]
struct Unauthenticated {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// An unauthenticated connection's place; given back when it authenticates or goes.
struct Pending {
    ip: IpAddr,
    gate: Arc<Mutex<Unauthenticated>>,
}

impl Pending {
    /// A place for a new connection from `ip`, or why there is none.
    fn admit(
        gate: &Arc<Mutex<Unauthenticated>>,
        ip: IpAddr,
        cap: usize,
    ) -> Result<Pending, String> {
        let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = g.by_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= UNAUTHENTICATED_PER_ADDRESS {
            return Err(format!(
                "at most {UNAUTHENTICATED_PER_ADDRESS} unauthenticated connections from one address"
            ));
        }
        if g.total >= cap {
            return Err(format!("at most {cap} unauthenticated connections at once"));
        }
        *g.by_address.entry(ip).or_default() += 1;
        g.total += 1;
        Ok(Pending {
            ip,
            gate: gate.clone(),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        g.total = g.total.saturating_sub(1);
        if let Some(n) = g.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.by_address.remove(&self.ip);
            }
        }
    }
}

/// How the console treats its clients.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Required with `auth` before any other command, when set.
    pub secret: Option<String>,
    /// A client silent this long is disconnected.
    pub idle_timeout: Duration,
    /// With a secret, a client must authenticate this soon after connecting.
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
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let gate = Arc::new(Mutex::new(Unauthenticated::default()));
    // Unauthenticated clients never hold the last quarter of the slots.
    let unauthenticated_cap = (settings.max_connections - settings.max_connections / 4).max(1);
    let mut accept_errors = crate::logging::Throttle::new(Duration::from_secs(10));
    loop {
        let accepted = crate::limits::accept(&listener, &shutdown, &mut accept_errors, "console");
        let Some((mut stream, peer)) = accepted.await else {
            return;
        };
        let pending = match settings.secret {
            None => Ok(None),
            Some(_) => Pending::admit(&gate, peer.ip(), unauthenticated_cap).map(Some),
        };
        let admitted = match pending {
            Err(why) => Err(why),
            Ok(pending) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Ok((permit, pending)),
                Err(_) => Err(format!("at most {} at once", settings.max_connections)),
            },
        };
        let (permit, pending) = match admitted {
            Ok(admitted) => admitted,
            Err(why) => {
                tracing::warn!(%peer, reason = %why, "console: connection refused");
                let refusal = Reply::error("too_many_connections", why);
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
                _ = serve(stream, peer, pending, &host, &settings) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
            tracing::debug!(%peer, "console: client gone");
        });
    }
}

/// One client, until it quits, goes quiet for too long or stops reading. `pending` holds its
/// place among the unauthenticated until it authenticates.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    mut pending: Option<Pending>,
    host: &HostHandle,
    settings: &Settings,
) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = FramedRead::new(reader, LineCodec::new(MAX_LINE));
    let mut authenticated = settings.secret.is_none();
    let auth_deadline = tokio::time::Instant::now() + settings.auth_timeout;
    let mut failures = 0;
    loop {
        let wait = if authenticated {
            settings.idle_timeout
        } else {
            auth_deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(settings.idle_timeout)
        };
        let line = match tokio::time::timeout(wait, lines.next()).await {
            Err(_) => {
                let bye = if authenticated {
                    Reply::error(
                        "timeout",
                        format!("no command for {}; closing", seconds(settings.idle_timeout)),
                    )
                } else {
                    Reply::error(
                        "timeout",
                        format!(
                            "not authenticated within {}; closing",
                            seconds(settings.auth_timeout)
                        ),
                    )
                };
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
            Line::Text(text) => match Command::parse(&text) {
                Command::Auth { secret } if settings.secret.is_some() => {
                    let (reply, ok) = auth::run(settings.secret.as_deref(), secret.as_deref());
                    if ok {
                        authenticated = true;
                        drop(pending.take()); // its place among the unauthenticated
                        reply
                    } else {
                        failures += 1;
                        tracing::warn!(%peer, attempt = failures, "console: failed auth");
                        tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                        if failures >= AUTH_ATTEMPTS {
                            let bye = Reply::error(
                                "auth_failed",
                                format!("wrong secret {AUTH_ATTEMPTS} times; closing"),
                            );
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                writer.write_all(&bye.render()),
                            )
                            .await;
                            return;
                        }
                        reply
                    }
                }
                command => dispatch(command, host, settings, &mut authenticated).await,
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

//! systemd's readiness protocol (`sd_notify`): when the host runs under a unit with
//! `Type=notify`, systemd sets `NOTIFY_SOCKET`, and the host sends `READY=1` once it serves
//! (its ports listen, the supervisor runs), `STOPPING=1` when it begins a stop,
//! `RELOADING=1` … `READY=1` around a reload, and `WATCHDOG=1` every half `WATCHDOG_USEC`
//! while the supervisor is ticking (a stuck supervisor stops the pings, and systemd restarts
//! the host). Each message is one datagram to the socket (a path, or `@name` for Linux's
//! abstract namespace). Worker processes do not inherit `NOTIFY_SOCKET`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variables systemd sets for the notify protocol; the host's alone.
pub const VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
    failures: std::sync::Mutex<crate::logging::Throttle>,
}

impl Notifier {
    /// From the environment, when systemd asked for notifications; a socket that cannot be
    /// used is logged and ignored (the host runs on).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().into_owned();
        let to = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => SocketAddr::from_pathname(&path),
        };
        let made = to.and_then(|to| Ok((UnixDatagram::unbound()?, to)));
        let (socket, to) = match made {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(notify_socket = %path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from the host");
                return None;
            }
        };
        // WATCHDOG_PID, when set, names the process the watchdog is for.
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            to,
            watchdog,
            failures: std::sync::Mutex::new(crate::logging::Throttle::new(Duration::from_secs(60))),
        })
    }

    /// How often systemd wants a ping, if it does.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (`READY=1`, `STOPPING=1`, …); a failure is logged.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            let allowed = self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow();
            if let Some(held_back) = allowed {
                tracing::warn!(error = %e, notification = ?message, held_back, "cannot notify systemd");
            }
        }
    }

    /// `READY=1` with a status line (on one line: a newline would end the field).
    pub fn ready(&self, status: &str) {
        let status = status.split_whitespace().collect::<Vec<_>>().join(" ");
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={status}",
            std::process::id()
        ));
    }
}

/// systemd's monotonic clock, in microseconds (for `RELOADING=1`).
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

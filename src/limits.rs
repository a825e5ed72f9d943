//! Descriptor budgets. The host raises its soft open-files limit to the hard one at start,
//! then shares it out: the built-in job server may hold only what is left after what the
//! host needs for itself, its console and its worker processes, so idle connections can never
//! leave it unable to start a process or answer its console.

/// Descriptors the host keeps for itself: log, stats table, pidfile, listeners, the runtime,
/// job server connections of the observer, and slack.
const HOST_RESERVE: u64 = 64;
/// Descriptors one worker process costs the host: its stdout and stderr pipes, and one more
/// while it starts.
const PER_PROCESS: u64 = 3;
/// The least the job server is given, however tight the limit.
const MIN_SERVER_CONNECTIONS: u64 = 16;

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_open_files() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// How many connections the built-in job server may hold: the open-files limit less what the
/// host, `console` console clients and `processes` worker processes need; at most `wanted`.
pub fn server_connections(
    open_files: u64,
    console: usize,
    processes: usize,
    wanted: usize,
) -> usize {
    let reserve = HOST_RESERVE + console as u64 + PER_PROCESS * processes as u64;
    let cap = open_files
        .saturating_sub(reserve)
        .max(MIN_SERVER_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX).min(wanted)
}

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. A failed
/// accept (out of file descriptors, say) is logged as `errors` allows, naming `who`, and
/// retried after a moment rather than in a spin.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &tokio_util::sync::CancellationToken,
    errors: &mut crate::logging::Throttle,
    who: &'static str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(e) => {
                if let Some(held_back) = errors.allow() {
                    tracing::warn!(error = %e, held_back, "{who}: accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_what_is_left() {
        // The usual soft limit, a console of 64 and 100 processes.
        assert_eq!(
            server_connections(1024, 64, 100, 10_000),
            1024 - 64 - 64 - 300
        );
        // A generous limit: the server's own cap.
        assert_eq!(server_connections(1 << 20, 64, 100, 10_000), 10_000);
        // Too tight for anything: a floor, so the server still serves.
        assert_eq!(server_connections(100, 64, 100, 10_000), 16);
    }
}

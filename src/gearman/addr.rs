//! Job server addresses (`host[:port]`, default port 4730) and how we connect to them.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;
use tokio::net::TcpStream;

/// The port gearmand listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4730;

/// A job server's address as the user wrote it: a host name or IP and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ServerAddr {
            host: host.into(),
            port,
        }
    }

    /// Connects with a time limit, with Nagle off (every Gearman packet is a complete message
    /// someone is waiting for), and bounds on a job server that vanished without closing the
    /// connection (a cut link, a machine gone): an idle connection (a sleeping worker, a
    /// client waiting for a result) is probed after [`KEEPALIVE_IDLE`] and given up after
    /// three unanswered probes; data the peer never acknowledges fails the connection after
    /// [`UNACKNOWLEDGED_LIMIT`]. Either way the worker reconnects and the client hears of it,
    /// instead of waiting for ever.
    pub async fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
        let stream =
            tokio::time::timeout(timeout, TcpStream::connect((self.host.as_str(), self.port)))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {self} timed out after {timeout:?}"),
                    )
                })??;
        stream.set_nodelay(true)?;
        bound_silence(&stream)?;
        Ok(stream)
    }
}

/// Keepalive probes and a limit on unacknowledged data (see [`ServerAddr::connect`]); the
/// built-in server sets the same on the connections it accepts, so that the jobs of a worker
/// whose machine vanished go back to the queue.
pub fn bound_silence(stream: &TcpStream) -> io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT))
}

/// Silence on a job server connection before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Between keepalive probes; the third unanswered one ends the connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long sent data may go unacknowledged before the connection is given up.
pub const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(20);

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why an address string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid job server address {input:?}: {problem}")]
pub struct AddrError {
    pub input: String,
    pub problem: &'static str,
}

impl FromStr for ServerAddr {
    type Err = AddrError;

    /// Accepts `host`, `host:port`, `[v6]`, `[v6]:port` and a bare IPv6 address.
    fn from_str(input: &str) -> Result<Self, AddrError> {
        let err = |problem| AddrError {
            input: input.to_string(),
            problem,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| err("missing ']'"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| err("expected ':' after ']'"))?,
                    ),
                ),
            }
        } else if s.matches(':').count() > 1 {
            (s, None) // a bare IPv6 address
        } else {
            match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        // An IPv6 address, or a host name / IPv4 address of the characters DNS allows (and
        // `_`, which container networks use); anything else (`x y`) cannot be connected to.
        let valid = if host.contains(':') {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        };
        if !valid {
            return Err(err("the host is not a host name or an IP address"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(err("the port must be a number from 1 to 65535")),
                Ok(p) => p,
            },
        };
        Ok(ServerAddr::new(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let p = |s: &str| s.parse::<ServerAddr>();
        assert_eq!(p("localhost"), Ok(ServerAddr::new("localhost", 4730)));
        assert_eq!(p("10.0.0.1:4731"), Ok(ServerAddr::new("10.0.0.1", 4731)));
        assert_eq!(p("[::1]:5000"), Ok(ServerAddr::new("::1", 5000)));
        assert_eq!(p("[::1]"), Ok(ServerAddr::new("::1", 4730)));
        assert_eq!(p("::1"), Ok(ServerAddr::new("::1", 4730)));
        assert!(p("").is_err());
        assert!(p("host:").is_err());
        assert!(p("host:0").is_err());
        assert!(p("host:99999").is_err());
        assert!(p(":4730").is_err());
        // Issue 12: `job_servers = ["x y"]` was accepted.
        assert!(p("x y").is_err());
        assert!(p("x y:4730").is_err());
        assert!(p("a:b:c").is_err());
        assert!(p("host/path:1").is_err());
        assert_eq!(p("gearman_1:4730"), Ok(ServerAddr::new("gearman_1", 4730)));
        assert_eq!(ServerAddr::new("::1", 1).to_string(), "[::1]:1");
        assert_eq!(ServerAddr::new("h", 1).to_string(), "h:1");
    }
}

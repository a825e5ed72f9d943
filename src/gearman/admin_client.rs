//! A client for the job server's text admin protocol: one TCP connection, one command at a
//! time, every read bounded in size and time.

use super::addr::ServerAddr;
use super::admin::{
    AdminCommand, AdminError, AdminReply, FunctionStatus, MalformedReply, ReplyShape,
};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line we accept.
const MAX_LINE: usize = 64 * 1024;
/// Most rows we accept in one list reply.
const MAX_ROWS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("cannot connect to job server {addr}: {source}")]
    Connect { addr: ServerAddr, source: io::Error },
    #[error("job server {addr}: {source}")]
    Io { addr: ServerAddr, source: io::Error },
    #[error("job server {addr} did not answer within {timeout:?}")]
    Timeout { addr: ServerAddr, timeout: Duration },
    #[error("job server {addr} closed the connection mid-reply")]
    Closed { addr: ServerAddr },
    #[error("job server {addr} sent a reply line over {MAX_LINE} bytes")]
    LineTooLong { addr: ServerAddr },
    #[error("job server {addr} sent over {MAX_ROWS} rows")]
    TooManyRows { addr: ServerAddr },
    #[error("job server {addr}: {source}")]
    Malformed {
        addr: ServerAddr,
        source: MalformedReply,
    },
    #[error("job server {addr} answered ERR {source}")]
    Server {
        addr: ServerAddr,
        source: AdminError,
    },
}

/// A connection to one job server's admin port (gearmand serves it on its job port).
pub struct AdminClient {
    addr: ServerAddr,
    stream: BufReader<TcpStream>,
    timeout: Duration,
}

impl AdminClient {
    /// Connects; `timeout` bounds the connection and every later command.
    pub async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Self, AdminClientError> {
        let stream = addr
            .connect(timeout)
            .await
            .map_err(|source| AdminClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        Ok(AdminClient {
            addr: addr.clone(),
            stream: BufReader::new(stream),
            timeout,
        })
    }

    pub fn addr(&self) -> &ServerAddr {
        &self.addr
    }

    /// Sends one command and reads its whole reply.
    pub async fn execute(
        &mut self,
        command: &AdminCommand,
    ) -> Result<AdminReply, AdminClientError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(command)).await {
            Ok(result) => result,
            Err(_) => Err(AdminClientError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }

    /// The `status` rows.
    pub async fn status(&mut self) -> Result<Vec<FunctionStatus>, AdminClientError> {
        match self.execute(&AdminCommand::Status).await? {
            AdminReply::Status(rows) => Ok(rows),
            _ => unreachable!("AdminReply::parse answers Status for the status command"),
        }
    }

    async fn exchange(&mut self, command: &AdminCommand) -> Result<AdminReply, AdminClientError> {
        let io_err = |source| AdminClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream
            .get_mut()
            .write_all(command.to_line().as_bytes())
            .await
            .map_err(io_err)?;
        let first = self.read_line().await?;
        if let Some(err) = AdminError::parse(&first) {
            return Err(AdminClientError::Server {
                addr: self.addr.clone(),
                source: err,
            });
        }
        let mut lines = Vec::new();
        match command.reply_shape() {
            ReplyShape::Line => lines.push(first),
            ReplyShape::List => {
                let mut line = first;
                while line != "." {
                    if lines.len() >= MAX_ROWS {
                        return Err(AdminClientError::TooManyRows {
                            addr: self.addr.clone(),
                        });
                    }
                    lines.push(line);
                    line = self.read_line().await?;
                }
            }
        }
        AdminReply::parse(command, &lines).map_err(|source| AdminClientError::Malformed {
            addr: self.addr.clone(),
            source,
        })
    }

    /// One line without its LF or CRLF.
    async fn read_line(&mut self) -> Result<String, AdminClientError> {
        let mut buf = Vec::new();
        let read = (&mut self.stream)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|source| AdminClientError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        if buf.last() != Some(&b'\n') {
            return Err(if read > MAX_LINE {
                AdminClientError::LineTooLong {
                    addr: self.addr.clone(),
                }
            } else {
                AdminClientError::Closed {
                    addr: self.addr.clone(),
                }
            });
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

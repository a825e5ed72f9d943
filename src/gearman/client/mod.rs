//! A Gearman client: submit jobs (foreground or background, three priorities, unique ids),
//! follow them (WORK_DATA, WARNING, STATUS, COMPLETE, FAIL, EXCEPTION), ask a server for a
//! job's status and echo, over one or several job servers.
//!
//! Here the public API; in `connection`, the task behind each job server. Each job server
//! gets one connection, owned by a task that writes requests and reads everything the server
//! sends. gearmand answers requests in the order it received them, so
//! the task keeps a FIFO of what each request expects (JOB_CREATED, STATUS_RES, ECHO_RES,
//! OPTION_RES, or an ERROR instead of any of them) and routes WORK_* packets by job handle
//! to the foreground job that is listening. Callers hold a cheap handle and never touch the
//! socket.
//!
//! A job with a unique id always goes to the same server (so coalescing works across
//! clients); other jobs are spread round robin. When the chosen server cannot be reached the
//! next one is tried.

mod connection;

use super::addr::ServerAddr;
use super::codec::{ClientCodec, DEFAULT_MAX_FRAME};
use super::packet::{Packet, Priority};
use bytes::Bytes;
use connection::{Connection, Expect, Request, finished_signal, run_connection};

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::codec::Framed;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no job servers given")]
    NoServers,
    #[error("cannot connect to job server {addr}: {reason}")]
    Connect { addr: ServerAddr, reason: String },
    #[error("connection to job server {addr} lost: {reason}")]
    ConnectionLost { addr: ServerAddr, reason: String },
    #[error("job server {addr} answered ERROR {code}: {text}")]
    Server {
        addr: ServerAddr,
        code: String,
        text: String,
    },
    #[error("job server {addr} did not answer {what} within {timeout:?}")]
    Timeout {
        addr: ServerAddr,
        what: &'static str,
        timeout: Duration,
    },
    #[error("cannot send to job server {addr}: {reason}")]
    Encode { addr: ServerAddr, reason: String },
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Bounds connecting and every request that expects a reply (not a foreground job's
    /// run time).
    pub timeout: Duration,
    /// Ask servers for WORK_EXCEPTION packets (OPTION_REQ "exceptions").
    pub exceptions: bool,
    pub max_frame: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            exceptions: true,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// A job to submit.
#[derive(Clone, Debug, Default)]
pub struct JobRequest {
    pub function: Bytes,
    pub data: Bytes,
    /// Jobs with the same unique id are coalesced by the server; `None` sends an empty one,
    /// which never coalesces.
    pub unique: Option<Bytes>,
    pub priority: Priority,
    pub background: bool,
    /// Not handed out before this time, in seconds since the epoch (SUBMIT_JOB_EPOCH: a
    /// background job of normal priority, whatever `priority` and `background` say).
    pub run_at: Option<u64>,
}

impl JobRequest {
    pub fn new(function: impl Into<Bytes>, data: impl Into<Bytes>) -> Self {
        JobRequest {
            function: function.into(),
            data: data.into(),
            ..Default::default()
        }
    }

    pub fn background(mut self) -> Self {
        self.background = true;
        self
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn unique(mut self, unique: impl Into<Bytes>) -> Self {
        self.unique = Some(unique.into());
        self
    }

    /// A background job not run before `epoch_seconds` (SUBMIT_JOB_EPOCH).
    pub fn run_at(mut self, epoch_seconds: u64) -> Self {
        self.run_at = Some(epoch_seconds);
        self.background = true;
        self
    }
}

/// A job handle and the server that issued it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobHandle {
    pub server: ServerAddr,
    pub handle: Bytes,
}

/// What a foreground job reports while it runs, and how it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEvent {
    Data(Bytes),
    Warning(Bytes),
    Status { numerator: u32, denominator: u32 },
    Complete(Bytes),
    Fail,
    Exception(Bytes),
}

/// How a foreground job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Complete(Bytes),
    /// WORK_FAIL. Workers put the reason in a WORK_WARNING just before it (geardriver's do:
    /// it is the one form every client understands), so the last warning is kept.
    Fail {
        last_warning: Option<Bytes>,
    },
    /// WORK_EXCEPTION, for a client that asked for exceptions.
    Exception(Bytes),
}

impl JobOutcome {
    /// A failure whose last warning was `message`.
    pub fn failed_with(message: impl Into<Bytes>) -> JobOutcome {
        JobOutcome::Fail {
            last_warning: Some(message.into()),
        }
    }

    /// The failure's message: the exception's data, else the last warning.
    pub fn failure_message(&self) -> Option<&Bytes> {
        match self {
            JobOutcome::Complete(_) => None,
            JobOutcome::Fail { last_warning } => last_warning.as_ref(),
            JobOutcome::Exception(data) => Some(data),
        }
    }
}

/// A job's status as GET_STATUS / GET_STATUS_UNIQUE report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    /// The job handle for GET_STATUS; the unique id for GET_STATUS_UNIQUE (gearmand answers
    /// with the id it was asked about).
    pub id: Bytes,
    pub known: bool,
    pub running: bool,
    pub numerator: u32,
    pub denominator: u32,
    /// Clients waiting for the job; only GET_STATUS_UNIQUE reports it.
    pub waiting_clients: Option<u32>,
}

/// A submitted job. For a foreground job, its events arrive through [`SubmittedJob::next_event`].
#[derive(Debug)]
pub struct SubmittedJob {
    pub handle: JobHandle,
    events: Option<mpsc::UnboundedReceiver<JobEvent>>,
}

impl SubmittedJob {
    /// The next event of a foreground job; `None` after its final event, and at once for a
    /// background job. A lost connection is an error: the job's fate is unknown.
    pub async fn next_event(&mut self) -> Option<Result<JobEvent, ClientError>> {
        let events = self.events.as_mut()?;
        match events.recv().await {
            Some(event) => {
                if matches!(
                    event,
                    JobEvent::Complete(_) | JobEvent::Fail | JobEvent::Exception(_)
                ) {
                    self.events = None;
                }
                Some(Ok(event))
            }
            None => {
                self.events = None;
                Some(Err(ClientError::ConnectionLost {
                    addr: self.handle.server.clone(),
                    reason: "closed before the job finished".into(),
                }))
            }
        }
    }

    /// Waits for a foreground job to end, skipping intermediate events.
    pub async fn wait(mut self) -> Result<JobOutcome, ClientError> {
        let mut last_warning = None;
        while let Some(event) = self.next_event().await {
            match event? {
                JobEvent::Complete(data) => return Ok(JobOutcome::Complete(data)),
                JobEvent::Fail => return Ok(JobOutcome::Fail { last_warning }),
                JobEvent::Exception(data) => return Ok(JobOutcome::Exception(data)),
                JobEvent::Warning(data) => last_warning = Some(data),
                JobEvent::Data(_) | JobEvent::Status { .. } => {}
            }
        }
        Err(ClientError::ConnectionLost {
            addr: self.handle.server.clone(),
            reason: "this job has no events to wait for (background, or already ended)".into(),
        })
    }
}

/// A Gearman client over one or several job servers. Cheap to share behind an `Arc`.
pub struct Client {
    servers: Vec<ServerSlot>,
    next: AtomicUsize,
    options: ClientOptions,
}

struct ServerSlot {
    addr: ServerAddr,
    /// Held only while (re)connecting, so two submits do not open two connections.
    conn: Mutex<Option<Connection>>,
}

impl Client {
    pub fn new(servers: Vec<ServerAddr>, options: ClientOptions) -> Result<Self, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        Ok(Client {
            servers: servers
                .into_iter()
                .map(|addr| ServerSlot {
                    addr,
                    conn: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
            options,
        })
    }

    pub fn servers(&self) -> impl Iterator<Item = &ServerAddr> {
        self.servers.iter().map(|s| &s.addr)
    }

    /// Submits a job. Foreground jobs come back with their event stream attached.
    pub async fn submit(&self, request: JobRequest) -> Result<SubmittedJob, ClientError> {
        let first = match &request.unique {
            Some(unique) if !unique.is_empty() => self.server_for_unique(unique),
            _ => self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len(),
        };
        let mut last_error = None;
        for i in 0..self.servers.len() {
            let slot = &self.servers[(first + i) % self.servers.len()];
            let sender = match self.connection(slot).await {
                Ok(sender) => sender,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let (events_tx, events_rx) = if request.background {
                (None, None)
            } else {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            let packet = match request.run_at {
                Some(epoch) => Packet::SubmitJobEpoch {
                    function: request.function.clone(),
                    unique: request.unique.clone().unwrap_or_default(),
                    epoch,
                    data: request.data.clone(),
                },
                None => Packet::Submit {
                    priority: request.priority,
                    background: request.background,
                    function: request.function.clone(),
                    unique: request.unique.clone().unwrap_or_default(),
                    data: request.data.clone(),
                },
            };
            let expect = Expect::Created {
                events: events_tx,
                reply: reply_tx,
            };
            if let Err(e) = sender.send(&slot.addr, Request { packet, expect }) {
                // The connection died before the request was written: safe to try elsewhere.
                *slot.conn.lock().await = None;
                last_error = Some(e);
                continue;
            }
            let handle = self
                .await_reply(&sender, &slot.addr, "JOB_CREATED", reply_rx)
                .await?;
            return Ok(SubmittedJob {
                handle: JobHandle {
                    server: slot.addr.clone(),
                    handle,
                },
                events: events_rx,
            });
        }
        Err(last_error.unwrap_or(ClientError::NoServers))
    }

    /// Submits a foreground job and waits for its outcome.
    pub async fn run(&self, request: JobRequest) -> Result<JobOutcome, ClientError> {
        let request = JobRequest {
            background: false,
            run_at: None,
            ..request
        };
        self.submit(request).await?.wait().await
    }

    /// GET_STATUS for a handle, asked of the server that issued it.
    pub async fn get_status(&self, handle: &JobHandle) -> Result<JobStatus, ClientError> {
        let slot = self
            .servers
            .iter()
            .find(|s| s.addr == handle.server)
            .ok_or(ClientError::NoServers)?;
        let (tx, rx) = oneshot::channel();
        let conn = self
            .request(
                slot,
                Packet::GetStatus {
                    handle: handle.handle.clone(),
                },
                Expect::Status(tx),
            )
            .await?;
        self.await_reply(&conn, &slot.addr, "STATUS_RES", rx).await
    }

    /// GET_STATUS_UNIQUE, asked of the server jobs with this unique id go to.
    pub async fn get_status_unique(&self, unique: &[u8]) -> Result<JobStatus, ClientError> {
        let slot = &self.servers[self.server_for_unique(unique)];
        let (tx, rx) = oneshot::channel();
        let conn = self
            .request(
                slot,
                Packet::GetStatusUnique {
                    unique: Bytes::copy_from_slice(unique),
                },
                Expect::Status(tx),
            )
            .await?;
        self.await_reply(&conn, &slot.addr, "STATUS_RES_UNIQUE", rx)
            .await
    }

    /// ECHO_REQ to every server in turn until one answers; returns what it echoed.
    pub async fn echo(&self, data: Bytes) -> Result<Bytes, ClientError> {
        let mut last_error = ClientError::NoServers;
        for slot in &self.servers {
            let (tx, rx) = oneshot::channel();
            let sent = self
                .request(
                    slot,
                    Packet::EchoReq { data: data.clone() },
                    Expect::Echo(tx),
                )
                .await;
            match sent {
                Ok(conn) => return self.await_reply(&conn, &slot.addr, "ECHO_RES", rx).await,
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn server_for_unique(&self, unique: &[u8]) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        unique.hash(&mut hasher);
        // Below the server count, so it fits.
        usize::try_from(hasher.finish() % self.servers.len() as u64).unwrap_or(0)
    }

    /// Sends a request, returning the connection its reply will come on.
    async fn request(
        &self,
        slot: &ServerSlot,
        packet: Packet,
        expect: Expect,
    ) -> Result<Connection, ClientError> {
        let conn = self.connection(slot).await?;
        conn.send(&slot.addr, Request { packet, expect })?;
        Ok(conn)
    }

    async fn await_reply<T>(
        &self,
        conn: &Connection,
        addr: &ServerAddr,
        what: &'static str,
        rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.options.timeout, conn.reply(addr, rx)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                addr: addr.clone(),
                what,
                timeout: self.options.timeout,
            }),
        }
    }

    /// The live connection to a server, connecting (and setting options) when there is none.
    async fn connection(&self, slot: &ServerSlot) -> Result<Connection, ClientError> {
        let mut conn = slot.conn.lock().await;
        if let Some(sender) = conn.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        *conn = None;
        let stream =
            slot.addr
                .connect(self.options.timeout)
                .await
                .map_err(|e| ClientError::Connect {
                    addr: slot.addr.clone(),
                    reason: e.to_string(),
                })?;
        let framed = Framed::new(stream, ClientCodec::new(self.options.max_frame));
        let (tx, rx) = mpsc::unbounded_channel();
        let ended = Arc::new(std::sync::OnceLock::new());
        let (finished_tx, finished) = finished_signal();
        tokio::spawn(run_connection(
            slot.addr.clone(),
            framed,
            rx,
            ended.clone(),
            finished_tx,
        ));
        let tx = Connection {
            requests: tx,
            ended,
            finished,
        };
        if self.options.exceptions {
            let (reply_tx, reply_rx) = oneshot::channel();
            let request = Request {
                packet: Packet::OptionReq {
                    option: Bytes::from_static(b"exceptions"),
                },
                expect: Expect::OptionSet(reply_tx),
            };
            tx.send(&slot.addr, request)?;
            self.await_reply(&tx, &slot.addr, "OPTION_RES", reply_rx)
                .await?;
        }
        *conn = Some(tx.clone());
        Ok(tx)
    }
}

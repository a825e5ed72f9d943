//! The built-in Gearman job server: gearmand 1.1's binary protocol and text admin protocol
//! on one port, so existing clients, workers and admin tools work against it unchanged.
//!
//! `run(listener, settings, shutdown)` is the whole API. Each connection gets a task that
//! reads packets (or admin lines) with the server codec, handles everything already buffered
//! under the state's lock, and writes the replies in one flush; packets for other connections
//! (a result for a waiting client, a NOOP for a sleeping worker) go through their bounded
//! outbound queues. `state.rs` holds the rules.
//!
//! Where this server differs from gearmand 1.1.20 on purpose, each time because gearmand's
//! behaviour breaks or loses something a client relies on (README, "The built-in job
//! server"): a job whose worker disconnects goes back to the *head* of its queue (gearmand:
//! the tail); a job that overruns its worker's CAN_DO_TIMEOUT *fails* (gearmand re-queues
//! it); failures the server decides (job_retries, CAN_DO_TIMEOUT) reach clients as
//! WORK_WARNING with the reason, then WORK_FAIL; a background submission merged into a
//! foreground job keeps it alive; `drop function` is refused while jobs are queued;
//! SUBMIT_REDUCE_JOB* get ERROR like SUBMIT_JOB_SCHED; cancelling a queued job tells its
//! waiting clients (WORK_FAIL).
//!
//! With a persistent queue (`queue`), background jobs are written before their JOB_CREATED
//! goes out: the connection's replies wait for the group commit that holds its jobs.

pub mod queue;
mod state;

use super::codec::{
    DEFAULT_MAX_FRAME, DEFAULT_MAX_LINE, ProtocolError, ServerCodec, ServerInbound, ServerOutbound,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
pub use state::FunctionFigures;
use state::{ConnId, Effect, State};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// Hand-outs of a job before it fails, unless configured: a poison job fails to its clients
/// instead of killing workers forever.
pub const DEFAULT_JOB_RETRIES: u32 = 3;

/// Limits of the server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_connections: usize,
    /// Largest packet body accepted.
    pub max_packet: usize,
    /// Longest text admin line.
    pub max_line: usize,
    /// Packets queued for one connection before it is dropped as not reading.
    pub max_queued_replies: usize,
    /// Bytes queued for one connection (results and data for a client) before it is dropped
    /// as not reading.
    pub max_queued_bytes: usize,
    /// The host name in job handles (`H:host:N`).
    pub host: String,
    /// A job handed out this many times to workers that went away without a result fails
    /// (gearmand's `--job-retries`; 0 = retry forever, gearmand's default).
    pub job_retries: u32,
    /// A connection that has sent nothing at all this long is closed.
    pub silent_connection_timeout: Duration,
    /// A packet (or admin line) begun but not finished, with no byte of progress for this
    /// long, closes its connection.
    pub stalled_packet_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 10_000,
            max_packet: DEFAULT_MAX_FRAME,
            max_line: DEFAULT_MAX_LINE,
            max_queued_replies: 65_536,
            max_queued_bytes: 64 * 1024 * 1024,
            host: host_name(),
            job_retries: DEFAULT_JOB_RETRIES,
            silent_connection_timeout: Duration::from_secs(30),
            stalled_packet_timeout: Duration::from_secs(30),
        }
    }
}

/// The machine's host name, as gearmand puts it in job handles.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// State shared by the connections. The mutex serialises packet handling, which is what
/// keeps queues, indexes and waiting clients consistent; it is never held across an await.
struct Shared {
    state: Mutex<State>,
    settings: Settings,
    next_conn: AtomicU64,
    /// Commits the persistent queue outside the state's lock.
    committer: Option<queue::Committer>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while handling one packet must not take the whole server down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves until `shutdown` is cancelled: then it stops accepting, tells every connection
/// (an ERROR packet), and returns once the connections are closed. Background jobs live in
/// memory only: [`run_with_queue`] keeps them.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: CancellationToken) {
    run_with_queue(listener, settings, None, shutdown).await;
}

/// [`run`], keeping background jobs in `queue` (opened with the jobs it held, which are
/// queued again first).
pub async fn run_with_queue(
    listener: TcpListener,
    settings: Settings,
    queue: Option<(queue::Queue, Vec<queue::StoredJob>)>,
    shutdown: CancellationToken,
) {
    let (_, server) = start(listener, settings, queue, shutdown);
    server.await;
}

/// What the host's metrics read from a running server.
#[derive(Clone)]
pub struct Probe(Arc<Shared>);

/// The server's figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Sorted by name.
    pub functions: Vec<FunctionFigures>,
    pub connections: usize,
}

impl Probe {
    pub fn figures(&self) -> Figures {
        let (functions, connections) = self.0.lock().figures();
        Figures {
            functions,
            connections,
        }
    }
}

/// [`run_with_queue`], with a [`Probe`] on the server; the future serves.
pub fn start(
    listener: TcpListener,
    settings: Settings,
    queue: Option<(queue::Queue, Vec<queue::StoredJob>)>,
    shutdown: CancellationToken,
) -> (Probe, impl Future<Output = ()>) {
    let mut state = State::new(
        &settings.host,
        settings.job_retries,
        settings.max_queued_bytes,
    );
    let committer = queue.as_ref().map(|(queue, _)| queue.committer());
    if let Some((queue, restored)) = queue {
        let count = restored.len();
        tracing::info!(queue = %queue.path().display(), jobs = count, "job server: persistent queue open; its jobs are queued again");
        state.persist(queue, restored);
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        next_conn: AtomicU64::new(1),
        settings,
        committer,
    });
    (Probe(shared.clone()), serve_all(listener, shared, shutdown))
}

async fn serve_all(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    // The clock: jobs with a time are queued when it comes (and sleeping workers told), and
    // deletions of finished jobs are committed.
    let clock = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                shared.lock().release_due();
                if let Some(committer) = &shared.committer {
                    committer.commit();
                }
            }
        })
    };
    let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
    let tracker = tokio_util::task::TaskTracker::new();
    let mut accept_errors = crate::logging::Throttle::new(Duration::from_secs(10));
    let mut refusals = crate::logging::Throttle::new(Duration::from_secs(10));
    loop {
        let accepted =
            crate::limits::accept(&listener, &shutdown, &mut accept_errors, "job server");
        let Some((stream, peer)) = accepted.await else {
            break;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(held_back) = refusals.allow() {
                tracing::warn!(%peer, held_back, "job server: too many connections; refusing one");
            }
            continue;
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            serve(stream, peer.ip(), &shared).await;
            drop(permit);
        });
    }
    drop(listener);
    shared.lock().shutdown_notice();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("job server: connections still open 5 s after shutdown");
    }
    clock.abort();
    let (unstored, queue) = shared.lock().close();
    match queue {
        Some(path) => {
            tracing::info!(queue = %path.display(), "job server: stopped; queued background jobs are kept for the next start")
        }
        None if unstored > 0 => tracing::warn!(
            dropped = unstored,
            "job server: stopped with {unstored} background job{} in memory only; they are lost. \
             Set [server] queue = \"PATH\" (or `geardriver server --queue PATH`) to keep them across restarts",
            if unstored == 1 { "" } else { "s" }
        ),
        None => {}
    }
}

/// The ERROR packet a peer gets for bytes that cannot be a request.
fn refusal(error: &ProtocolError) -> crate::gearman::Packet {
    let code = match error {
        ProtocolError::BadMagic { .. } | ProtocolError::WrongMagic { .. } => "INVALID_MAGIC",
        ProtocolError::UnknownType(_) => "INVALID_COMMAND",
        ProtocolError::TooLarge { .. } => "PACKET_TOO_LARGE",
        ProtocolError::LineTooLong { .. } => "LINE_TOO_LONG",
        _ => "INVALID_PACKET",
    };
    crate::gearman::Packet::Error {
        code: bytes::Bytes::from_static(code.as_bytes()),
        text: bytes::Bytes::from(error.to_string()),
    }
}

/// One connection until it closes, misbehaves, is dropped for not reading, or the server
/// stops (it is sent a SHUTDOWN error, then closed).
async fn serve(stream: TcpStream, ip: std::net::IpAddr, shared: &Arc<Shared>) {
    let id: ConnId = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let _ = crate::gearman::addr::bound_silence(&stream);
    let fd = stream.as_raw_fd();
    let settings = &shared.settings;
    let mut framed = Framed::new(
        stream,
        ServerCodec::new(settings.max_packet, settings.max_line),
    );
    let (outbound_tx, mut outbound) = mpsc::channel(settings.max_queued_replies);
    let kill = CancellationToken::new();
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    shared
        .lock()
        .connect(id, fd, ip, outbound_tx, queued.clone(), kill.clone());
    let written = |message: &ServerOutbound| {
        if let ServerOutbound::Packet(packet) = message {
            queued.fetch_sub(state::queued_len(packet), Ordering::Relaxed);
        }
    };
    let mut replies = Vec::new();
    let mut effects = Vec::new();
    let mut storing = Vec::new();
    // Checks for a silent new connection and a stalled packet, at half the shorter timeout:
    // one wake-up per connection every few seconds, none on the packet path.
    let check_every = settings
        .silent_connection_timeout
        .min(settings.stalled_packet_timeout)
        / 2;
    let opened = tokio::time::Instant::now();
    let mut check = tokio::time::interval_at(opened + check_every, check_every);
    let mut heard = false;
    // The partial packet's length at the last check, and since when it has not grown.
    let mut partial: Option<(usize, tokio::time::Instant)> = None;
    let closing = loop {
        tokio::select! {
            biased;
            _ = kill.cancelled() => break "it did not read its replies",
            now = check.tick() => {
                let buffered = framed.read_buffer().len();
                heard |= buffered > 0;
                if !heard && now - opened >= settings.silent_connection_timeout {
                    break "it sent nothing";
                }
                partial = match partial {
                    Some((len, since)) if len == buffered && buffered > 0 => {
                        if now - since >= settings.stalled_packet_timeout {
                            break "its packet stalled half sent";
                        }
                        Some((len, since))
                    }
                    _ if buffered > 0 => Some((buffered, now)),
                    _ => None,
                };
            }
            message = outbound.recv() => {
                let Some(message) = message else { break "its queue closed" };
                let shutting_down = matches!(&message, ServerOutbound::Packet(crate::gearman::Packet::Error { code, .. }) if &code[..] == b"SHUTDOWN");
                written(&message);
                if framed.feed(message).await.is_err() {
                    break "write failed";
                }
                while let Ok(more) = outbound.try_recv() {
                    written(&more);
                    if framed.feed(more).await.is_err() {
                        break;
                    }
                }
                if framed.flush().await.is_err() {
                    break "write failed";
                }
                if shutting_down {
                    break "the server is shutting down";
                }
            }
            inbound = framed.next() => {
                heard = true;
                let mut inbound = inbound;
                // Handle every request already buffered before writing: a worker's
                // WORK_COMPLETE and GRAB_JOB arrive together and are answered in one write.
                let mut failure = None;
                {
                    let mut state = shared.lock();
                    loop {
                        match inbound {
                            None => { failure = Some("closed by the peer".to_string()); break }
                            Some(Err(e)) => {
                                // Say why before closing, as gearmand does for the errors it
                                // reports (it leaves some connections open; this one goes).
                                replies.push(ServerOutbound::Packet(refusal(&e)));
                                failure = Some(e.to_string());
                                break;
                            }
                            Some(Ok(ServerInbound::Packet(packet))) => state.packet(id, packet, &mut replies, &mut effects),
                            Some(Ok(ServerInbound::AdminLine(line))) => {
                                let text = String::from_utf8_lossy(&line);
                                replies.push(ServerOutbound::Text(state.admin(&text)));
                            }
                        }
                        match framed.next().now_or_never() {
                            Some(next) => inbound = next,
                            None => break,
                        }
                    }
                }
                for effect in effects.drain(..) {
                    match effect {
                        Effect::Timeout { job, assignment, after } => {
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                shared.lock().expire(job, assignment);
                            });
                        }
                        Effect::Stored { handle, stored } => storing.push((handle, stored)),
                    }
                }
                // Background jobs are acknowledged once on disk: the replies wait for the
                // queue's next group commit (or say why the job was refused). Deletions of
                // the jobs this batch finished go with it, or, with nothing to acknowledge,
                // within a few milliseconds, in one commit with the others finished meanwhile.
                if let Some(committer) = &shared.committer {
                    if storing.is_empty() {
                        committer.commit_soon();
                    } else {
                        committer.commit();
                    }
                }
                for (handle, stored) in storing.drain(..) {
                    let refused = match stored.await {
                        Ok(Ok(())) => continue,
                        Ok(Err(reason)) => reason.to_string(),
                        Err(_) => "the queue writer has stopped".to_string(),
                    };
                    shared.lock().unstored(&handle);
                    for reply in &mut replies {
                        if matches!(reply, ServerOutbound::Packet(crate::gearman::Packet::JobCreated { handle: h }) if *h == handle) {
                            *reply = ServerOutbound::Packet(crate::gearman::Packet::Error {
                                code: bytes::Bytes::from_static(b"QUEUE_ERROR"),
                                text: bytes::Bytes::from(format!("the persistent queue could not store the job: {refused}")),
                            });
                        }
                    }
                }
                let mut write_failed = false;
                for reply in replies.drain(..) {
                    if framed.feed(reply).await.is_err() {
                        write_failed = true;
                        break;
                    }
                }
                if write_failed || framed.flush().await.is_err() {
                    break "write failed";
                }
                if let Some(reason) = failure {
                    if reason != "closed by the peer" {
                        tracing::debug!(conn = id, %reason, "job server: dropping a connection that sent bad data");
                    }
                    break "closed";
                }
            }
        }
    };
    if matches!(closing, "it sent nothing" | "its packet stalled half sent") {
        tracing::debug!(conn = id, %ip, reason = closing, "job server: closing an idle connection");
    }
    tracing::trace!(conn = id, reason = closing, "job server: connection closed");
    shared.lock().disconnect(id);
}

//! The worker loop every worker process runs: register abilities with every job server,
//! grab jobs, run them through a [`JobHandler`], report the result, sleep until woken.
//!
//! Each job server gets its own connection and its own small loop (`serve_server`):
//! connect, SET_CLIENT_ID, CAN_DO / CAN_DO_TIMEOUT, then GRAB_JOB_UNIQ → JOB_ASSIGN_UNIQ
//! (run it) or NO_JOB → PRE_SLEEP → wait for NOOP. A lost connection is retried with
//! exponential backoff and the abilities registered again.
//!
//! A worker process runs one job at a time, whatever the number of servers: a single
//! permit (a semaphore of one) is held from GRAB to the job's result. No wake-up is lost:
//! a connection either grabs or has sent PRE_SLEEP, and gearmand answers PRE_SLEEP with an
//! immediate NOOP when work arrived in between. On the hot path (work keeps coming, no other
//! server waiting for the permit) the next GRAB_JOB_UNIQ goes out in the same write as the
//! WORK_COMPLETE, which saves a system call and a round trip per job.
//!
//! With prefetch (an ability's `prefetch`, see [`prefetch`]) a connection loop keeps a
//! second connection to its job server and asks for the next job on it while a short job
//! runs; the two connections then take turns, each with a GRAB_JOB_UNIQ out while the other's
//! job runs.
//!
//! Stopping is cooperative: once `shutdown` is cancelled no new job is grabbed; a job in
//! progress finishes and its result is sent first; a prefetched job is given back.
//!
//! A failed job is reported as WORK_WARNING with the message, then WORK_FAIL (see
//! [`JobFailure`]): the one form every client library understands through gearmand and the
//! built-in server alike.

mod prefetch;

pub use prefetch::{GIVE_BACK, RECENT, SHORT_RUN};

use super::addr::ServerAddr;
use super::codec::{ClientCodec, DEFAULT_MAX_FRAME, ProtocolError};
use super::packet::Packet;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prefetch::{Recent, Releaser};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// A function the worker can do, with an optional per-job time limit that the job server
/// enforces (sent as CAN_DO_TIMEOUT, in milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ability {
    pub function: Bytes,
    pub timeout: Option<Duration>,
    /// Whether the next job may be fetched while one of this function's runs (when its
    /// recent runs were short; see [`prefetch`]).
    pub prefetch: bool,
}

impl Ability {
    pub fn new(function: impl Into<Bytes>) -> Self {
        Ability {
            function: function.into(),
            timeout: None,
            prefetch: false,
        }
    }

    pub fn with_prefetch(mut self, prefetch: bool) -> Self {
        self.prefetch = prefetch;
        self
    }

    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    fn packet(&self) -> Packet {
        match self.timeout {
            None => Packet::CanDo {
                function: self.function.clone(),
            },
            Some(timeout) => Packet::CanDoTimeout {
                function: self.function.clone(),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            },
        }
    }
}

/// How the worker connects and what it offers.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub servers: Vec<ServerAddr>,
    pub abilities: Vec<Ability>,
    /// Shown by the job server's `workers` command.
    pub client_id: Option<Bytes>,
    pub connect_timeout: Duration,
    /// First reconnect delay; it doubles after every failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_frame: usize,
}

impl WorkerConfig {
    pub fn new(servers: Vec<ServerAddr>, abilities: Vec<Ability>) -> Self {
        WorkerConfig {
            servers,
            abilities,
            client_id: None,
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// A job handed to this worker by a job server.
#[derive(Clone, Debug)]
pub struct AssignedJob {
    pub handle: Bytes,
    pub function: Bytes,
    pub unique: Bytes,
    pub data: Bytes,
    /// The job server the job came from.
    pub server: Arc<ServerAddr>,
    /// Reports the job failed from outside the async connection, for a process whose
    /// runtime is stuck in a job that overran its time.
    pub abort: JobAbort,
}

impl AssignedJob {
    fn new(
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
        server: &Arc<ServerAddr>,
        socket: &Option<Arc<OwnedFd>>,
    ) -> Self {
        AssignedJob {
            abort: JobAbort {
                handle: handle.clone(),
                socket: socket.clone(),
            },
            handle,
            function,
            unique,
            data,
            server: server.clone(),
        }
    }
}

/// How a job that did not complete is reported.
///
/// Never WORK_EXCEPTION: gearmand 1.1 relays it to a client that did not ask for exceptions
/// as a WORK_FAIL whose handle carries a trailing NUL, which the `gearman` CLI waits on
/// forever and Perl's Gearman::Client dies of. WORK_WARNING then WORK_FAIL reaches every
/// client: those that take warnings get the message, all of them get the failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobFailure {
    /// WORK_FAIL alone: the client learns only that the job failed.
    Fail,
    /// WORK_WARNING with the message, then WORK_FAIL.
    Message(Bytes),
}

impl JobFailure {
    /// The packets that report the failure of job `handle`, in order.
    pub fn packets(self, handle: Bytes) -> impl Iterator<Item = Packet> {
        let warning = match self {
            JobFailure::Fail => None,
            JobFailure::Message(data) => Some(Packet::WorkWarning {
                handle: handle.clone(),
                data,
            }),
        };
        warning.into_iter().chain([Packet::WorkFail { handle }])
    }
}

/// Reports a job failed by writing straight to its connection's socket (a duplicate of its
/// descriptor), bypassing the async connection. For a process about to exit because its
/// runtime is stuck in the job: nothing else writes on the connection then, since the only
/// writer is the stuck runtime between two of its own packets.
#[derive(Clone, Debug)]
pub struct JobAbort {
    handle: Bytes,
    socket: Option<Arc<OwnedFd>>,
}

impl JobAbort {
    /// WORK_WARNING with `message`, then WORK_FAIL, written with blocking retries for up to a
    /// second.
    pub fn fail_now(&self, message: &[u8]) -> std::io::Result<()> {
        use tokio_util::codec::Encoder;
        let Some(socket) = &self.socket else {
            return Err(std::io::Error::other("no connection for this job"));
        };
        let mut wire = bytes::BytesMut::new();
        let mut codec = ClientCodec::new(DEFAULT_MAX_FRAME);
        for packet in
            JobFailure::Message(Bytes::copy_from_slice(message)).packets(self.handle.clone())
        {
            codec
                .encode(packet, &mut wire)
                .map_err(std::io::Error::other)?;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut sent = 0;
        while sent < wire.len() {
            match nix::unistd::write(socket.as_ref(), &wire[sent..]) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR)
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Sends WORK_STATUS, WORK_DATA and WORK_WARNING for the job in progress. They reach the
/// job server before the job's result.
#[derive(Clone, Debug)]
pub struct WorkUpdates {
    handle: Bytes,
    tx: mpsc::UnboundedSender<Packet>,
}

impl WorkUpdates {
    pub fn status(&self, numerator: u32, denominator: u32) {
        self.send(Packet::WorkStatus {
            handle: self.handle.clone(),
            numerator,
            denominator,
        });
    }

    pub fn data(&self, data: impl Into<Bytes>) {
        self.send(Packet::WorkData {
            handle: self.handle.clone(),
            data: data.into(),
        });
    }

    pub fn warning(&self, data: impl Into<Bytes>) {
        self.send(Packet::WorkWarning {
            handle: self.handle.clone(),
            data: data.into(),
        });
    }

    fn send(&self, packet: Packet) {
        // The receiver lives as long as the connection; after that nobody can be told.
        let _ = self.tx.send(packet);
    }
}

/// What runs a job. Implemented by the plugin layer; tests implement it directly. A native
/// async trait (the worker loop is generic over it): no allocation per job.
pub trait JobHandler: Send + Sync {
    fn handle(
        &self,
        job: AssignedJob,
        updates: WorkUpdates,
    ) -> impl std::future::Future<Output = Result<Bytes, JobFailure>> + Send;

    /// Jobs it will still take, the one in hand included (`max_jobs`); `None`: no limit.
    /// Nothing is prefetched that it would not run.
    fn remaining(&self) -> Option<u64> {
        None
    }
}

/// State the per-server loops share.
struct Shared {
    /// One job at a time per worker process.
    turn: Semaphore,
    /// Connections waiting for the turn; when none is, the holder keeps it between jobs.
    waiting: AtomicUsize,
    /// Gives prefetched jobs back; present when some ability prefetches.
    releaser: Option<Releaser>,
}

/// Runs the worker until `shutdown` is cancelled, then returns once no job is in progress.
pub async fn run<H: JobHandler>(config: &WorkerConfig, handler: &H, shutdown: &CancellationToken) {
    let releaser = if config.abilities.iter().any(|a| a.prefetch) {
        Releaser::start()
            .inspect_err(
                |e| tracing::warn!(error = %e, "cannot start the prefetch thread; not prefetching"),
            )
            .ok()
    } else {
        None
    };
    let shared = Shared {
        turn: Semaphore::new(1),
        waiting: AtomicUsize::new(0),
        releaser,
    };
    if let [addr] = &config.servers[..] {
        // The common case, without join_all polling every loop on every wake-up.
        return serve_server(addr, config, &shared, handler, shutdown).await;
    }
    let loops = config
        .servers
        .iter()
        .map(|addr| serve_server(addr, config, &shared, handler, shutdown));
    futures_util::future::join_all(loops).await;
}

/// Why a connection's loop returned.
enum ConnectionEnd {
    Shutdown,
    Lost(String),
}

/// Keeps one job server served: connect, serve, and after a failure wait and reconnect.
async fn serve_server<H: JobHandler>(
    addr: &ServerAddr,
    config: &WorkerConfig,
    shared: &Shared,
    handler: &H,
    shutdown: &CancellationToken,
) {
    let mut backoff = config.reconnect_min;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let connected = tokio::select! {
            connected = connect(addr, config) => connected,
            _ = shutdown.cancelled() => return,
        };
        match connected {
            Ok(framed) => {
                tracing::debug!(server = %addr, "worker connected");
                let since = Instant::now();
                match serve_connection(addr, config, framed, shared, handler, shutdown).await {
                    ConnectionEnd::Shutdown => return,
                    ConnectionEnd::Lost(reason) => {
                        tracing::warn!(server = %addr, %reason, "lost job server connection; reconnecting");
                        // A connection that lived a while earns a fresh, short backoff; one
                        // that dies at once (a flapping server) keeps growing it.
                        if since.elapsed() > Duration::from_secs(2) {
                            backoff = config.reconnect_min;
                        }
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(server = %addr, %reason, retry_in = ?backoff, "cannot reach job server");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(config.reconnect_max);
    }
}

/// Up to a quarter more than `base`, so a fleet that lost the same server does not come back
/// in lockstep.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

type Connection = Framed<TcpStream, ClientCodec>;

/// Connects and registers the client id and every ability.
async fn connect(addr: &ServerAddr, config: &WorkerConfig) -> Result<Connection, String> {
    let stream = addr
        .connect(config.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut framed = Framed::new(stream, ClientCodec::new(config.max_frame));
    if let Some(id) = &config.client_id {
        framed
            .feed(Packet::SetClientId { id: id.clone() })
            .await
            .map_err(|e| e.to_string())?;
    }
    for ability in &config.abilities {
        framed
            .feed(ability.packet())
            .await
            .map_err(|e| e.to_string())?;
    }
    framed.flush().await.map_err(|e| e.to_string())?;
    Ok(framed)
}

/// One connection to a job server.
struct Lane {
    conn: Connection,
    /// A duplicate of the socket: to fail a stuck job from outside, and to give a prefetched
    /// job back. Without it a stuck job cannot be failed from outside (it still runs), and
    /// nothing is prefetched on this connection.
    socket: Option<Arc<OwnedFd>>,
    /// A GRAB_JOB_UNIQ is out and its answer not read yet.
    grabbing: bool,
}

impl Lane {
    fn new(conn: Connection) -> Lane {
        use std::os::fd::AsFd;
        let socket = conn
            .get_ref()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(Arc::new);
        Lane {
            conn,
            socket,
            grabbing: false,
        }
    }

    async fn grab(&mut self) -> Result<(), ProtocolError> {
        self.conn.send(Packet::GrabJobUniq).await?;
        self.grabbing = true;
        Ok(())
    }
}

/// How long a worker that could not open its prefetch connection goes without prefetching.
const PREFETCH_REOPEN: Duration = Duration::from_secs(10);

/// Serves jobs on one live connection (and, with prefetch, a second one to the same job
/// server) until it fails or the worker stops.
async fn serve_connection<H: JobHandler>(
    addr: &ServerAddr,
    config: &WorkerConfig,
    first: Connection,
    shared: &Shared,
    handler: &H,
    shutdown: &CancellationToken,
) -> ConnectionEnd {
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
    let server = Arc::new(addr.clone());
    // The connection the next job comes on is `lanes[cur]`; the other one, once prefetch
    // opened it, takes turns with it.
    let mut lanes: [Option<Lane>; 2] = [Some(Lane::new(first)), None];
    let mut cur = 0;
    let mut recent = vec![Recent::default(); config.abilities.len()];
    // Grabs in a row that found a job.
    let mut found_in_a_row = 0;
    // After the prefetch connection could not be opened, not before this: the job in hand
    // must not wait for a connect that fails again.
    let mut reopen_after: Option<Instant> = None;
    let mut turn: Option<SemaphorePermit<'_>> = None;
    loop {
        if turn.is_none() {
            shared.waiting.fetch_add(1, Ordering::SeqCst);
            let acquired = tokio::select! {
                permit = shared.turn.acquire() => permit.ok(),
                _ = shutdown.cancelled() => None,
            };
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            match acquired {
                Some(permit) => turn = Some(permit),
                None => return ConnectionEnd::Shutdown,
            }
        }
        let other_grabbing = lanes[1 - cur].as_ref().is_some_and(|l| l.grabbing);
        let lane = lanes[cur].as_mut().expect("the current connection is open");
        if !lane.grabbing {
            if shutdown.is_cancelled() {
                return ConnectionEnd::Shutdown;
            }
            if let Err(e) = lane.grab().await {
                return ConnectionEnd::Lost(e.to_string());
            }
        }
        lane.grabbing = false;
        let job = match next_reply(&mut lane.conn, &server, &lane.socket).await {
            Ok(Grabbed::Job(job)) => {
                found_in_a_row += 1;
                job
            }
            Ok(Grabbed::Nothing) => {
                found_in_a_row = 0;
                if other_grabbing {
                    // The other connection may still bring a job.
                    cur = 1 - cur;
                    continue;
                }
                turn = None;
                match sleep_until_woken(&mut lane.conn, addr, shutdown).await {
                    Ok(true) => continue,
                    Ok(false) => return ConnectionEnd::Shutdown,
                    Err(reason) => return ConnectionEnd::Lost(reason),
                }
            }
            Err(reason) => return ConnectionEnd::Lost(reason),
        };
        let other = 1 - cur;
        let ability = config
            .abilities
            .iter()
            .position(|a| a.function == job.function);
        // Prefetch while jobs queue up (the last grabs all found one: an idle process of the
        // pool would otherwise take the next at once), this function's jobs are short, no
        // other server waits for the turn, and the job would be run (max_jobs).
        let prefetching = |recent: &[Recent]| {
            shared.releaser.is_some()
                && !shutdown.is_cancelled()
                && found_in_a_row >= prefetch::RECENT
                && shared.waiting.load(Ordering::SeqCst) == 0
                && handler.remaining().is_none_or(|n| n > 1)
                && ability.is_some_and(|i| config.abilities[i].prefetch && recent[i].short())
        };
        // Ask for the next job on the other connection while this one runs.
        if prefetching(&recent) && !lanes[other].as_ref().is_some_and(|l| l.grabbing) {
            if lanes[other].is_none() && reopen_after.is_none_or(|t| Instant::now() >= t) {
                lanes[other] = match connect(addr, config).await {
                    Ok(conn) => Some(Lane::new(conn)),
                    Err(reason) => {
                        tracing::debug!(server = %addr, %reason, "cannot open the prefetch connection; not prefetching for 10 s");
                        reopen_after = Some(Instant::now() + PREFETCH_REOPEN);
                        None
                    }
                };
            }
            if let Some(lane) = lanes[other].as_mut().filter(|l| l.socket.is_some()) {
                if let Err(e) = lane.grab().await {
                    tracing::debug!(server = %addr, error = %e, "prefetch connection lost");
                    lanes[other] = None;
                }
            }
        }
        let started = Instant::now();
        // A job held on the other connection is given back if this one overruns.
        let hold = match (&shared.releaser, &lanes[other]) {
            (
                Some(releaser),
                Some(Lane {
                    socket: Some(socket),
                    grabbing: true,
                    ..
                }),
            ) => {
                let limit = ability.map_or(Duration::ZERO, |i| recent[i].hold_limit());
                Some((releaser, releaser.hold(socket.clone(), started + limit)))
            }
            _ => None,
        };
        let handle = job.handle.clone();
        let updates = WorkUpdates {
            handle: handle.clone(),
            tx: updates_tx.clone(),
        };
        let conn = &mut lanes[cur].as_mut().expect("open").conn;
        let result = run_job(handler, job, updates, conn, &mut updates_rx).await;
        if let Some(i) = ability {
            recent[i].record(started.elapsed());
        }
        if let Some((releaser, hold)) = hold {
            if !releaser.keep(hold) {
                // Given back: the job server queued it again when the connection ended.
                lanes[other] = None;
            }
        }
        let result = match result {
            Ok(result) => result,
            Err(e) => return ConnectionEnd::Lost(e.to_string()),
        };
        let next_is_fetched = lanes[other].as_ref().is_some_and(|l| l.grabbing);
        let lane = lanes[cur].as_mut().expect("the current connection is open");
        // Updates the handler sent just before returning go out before its result.
        while let Ok(update) = updates_rx.try_recv() {
            if update.work_handle() == Some(&handle) {
                if let Err(e) = lane.conn.feed(update).await {
                    return ConnectionEnd::Lost(e.to_string());
                }
            }
        }
        let fed = match result {
            Ok(data) => lane.conn.feed(Packet::WorkComplete { handle, data }).await,
            Err(failure) => feed_all(&mut lane.conn, failure.packets(handle)).await,
        };
        if let Err(e) = fed {
            return ConnectionEnd::Lost(e.to_string());
        }
        let stopping = shutdown.is_cancelled();
        // Ask for another job in the same write: the one after the prefetched one while
        // jobs are short, or the next one while no other server's connection waits for the
        // turn. Otherwise hand the turn over.
        let grab = !stopping
            && if next_is_fetched {
                prefetching(&recent)
            } else {
                shared.waiting.load(Ordering::SeqCst) == 0
            };
        if grab {
            if let Err(e) = lane.conn.feed(Packet::GrabJobUniq).await {
                return ConnectionEnd::Lost(e.to_string());
            }
            lane.grabbing = true;
        } else if !next_is_fetched {
            turn = None;
        }
        if let Err(e) = lane.conn.flush().await {
            return ConnectionEnd::Lost(e.to_string());
        }
        if stopping && !next_is_fetched {
            return ConnectionEnd::Shutdown;
        }
        // A prefetched job is run next, also when stopping (the process then exits): it is
        // short, and giving it back would count against its job_retries on gearmand.
        if next_is_fetched {
            cur = other;
        }
    }
}

async fn feed_all(
    conn: &mut Connection,
    packets: impl Iterator<Item = Packet>,
) -> Result<(), ProtocolError> {
    for packet in packets {
        conn.feed(packet).await?;
    }
    Ok(())
}

enum Grabbed {
    Job(AssignedJob),
    Nothing,
}

/// Reads until the answer to GRAB_JOB_UNIQ arrives.
///
/// No timer guards this wait (it would cost a timer-wheel round trip per job): like the wait
/// for NOOP, it relies on TCP keepalive to notice a server that vanished.
async fn next_reply(
    conn: &mut Connection,
    server: &Arc<ServerAddr>,
    socket: &Option<Arc<OwnedFd>>,
) -> Result<Grabbed, String> {
    loop {
        let packet = match conn.next().await {
            None => return Err("the job server closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(packet)) => packet,
        };
        match packet {
            Packet::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            } => {
                let job = AssignedJob::new(handle, function, unique, data, server, socket);
                return Ok(Grabbed::Job(job));
            }
            Packet::JobAssign {
                handle,
                function,
                data,
            } => {
                let job = AssignedJob::new(handle, function, Bytes::new(), data, server, socket);
                return Ok(Grabbed::Job(job));
            }
            Packet::NoJob => return Ok(Grabbed::Nothing),
            // A NOOP from an earlier PRE_SLEEP that crossed our GRAB: harmless.
            Packet::Noop => {}
            other => note_unexpected(server, &other),
        }
    }
}

/// After NO_JOB: PRE_SLEEP, then wait for NOOP. `Ok(false)` when the worker is stopping.
async fn sleep_until_woken(
    conn: &mut Connection,
    addr: &ServerAddr,
    shutdown: &CancellationToken,
) -> Result<bool, String> {
    conn.send(Packet::PreSleep)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let packet = tokio::select! {
            packet = conn.next() => packet,
            _ = shutdown.cancelled() => return Ok(false),
        };
        match packet {
            None => return Err("the job server closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Packet::Noop)) => return Ok(true),
            Some(Ok(other)) => note_unexpected(addr, &other),
        }
    }
}

fn note_unexpected(addr: &ServerAddr, packet: &Packet) {
    match packet {
        // An ERROR answers an earlier request (an old server refusing CAN_DO_TIMEOUT, say);
        // the connection is still usable.
        Packet::Error { code, text } => tracing::warn!(
            server = %addr,
            code = %String::from_utf8_lossy(code),
            text = %String::from_utf8_lossy(text),
            "job server reported an error"
        ),
        other => {
            tracing::debug!(server = %addr, packet = %other.packet_type(), "ignoring unexpected packet")
        }
    }
}

/// Runs the handler, forwarding its updates to the job server as they come.
async fn run_job<H: JobHandler>(
    handler: &H,
    job: AssignedJob,
    updates: WorkUpdates,
    conn: &mut Connection,
    updates_rx: &mut mpsc::UnboundedReceiver<Packet>,
) -> Result<Result<Bytes, JobFailure>, ProtocolError> {
    let handle = job.handle.clone();
    let work = handler.handle(job, updates);
    tokio::pin!(work);
    // Most jobs finish on their first poll (any plugin that does not wait): then the
    // updates channel is not polled at all. Its updates, if any, are sent by the caller.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(result) = first {
        return Ok(result);
    }
    loop {
        tokio::select! {
            biased;
            result = &mut work => return Ok(result),
            Some(update) = updates_rx.recv() => {
                if update.work_handle() == Some(&handle) {
                    conn.send(update).await?;
                }
            }
        }
    }
}

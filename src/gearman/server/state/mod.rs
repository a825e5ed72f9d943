//! The job server's state and every rule of the protocol that changes it: jobs, their
//! queues (per function and priority), the connections (as clients, workers or both), and
//! what each packet or admin command does to them.
//!
//! A job's life (submit, hand out, relay, finish, expire) is in `jobs`; the admin text
//! commands in `admin`. Everything here is synchronous and owned by one lock in `mod.rs`: a packet is handled
//! completely (queues, indexes, replies to other connections) before the next one, so the
//! structures never disagree. Replies for the connection that sent the packet are returned;
//! replies for others go into their outbound queues here.

mod admin;
mod jobs;
mod scheduled;

use super::queue::{Queue, Stored, StoredJob};
use crate::gearman::codec::ServerOutbound;
use crate::gearman::packet::{Packet, Priority};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's id; never reused.
pub type ConnId = u64;
type JobId = u64;

/// Longest unique id accepted, as gearmand (which truncates 64 to 63 bytes; this server
/// keeps all 64).
const MAX_UNIQUE: usize = 64;
/// gearmand's floor on CAN_DO_TIMEOUT: shorter timeouts (in milliseconds) are raised to it.
const MIN_WORKER_TIMEOUT: Duration = Duration::from_millis(1000);

fn slot(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

struct Job {
    handle: Bytes,
    function: Bytes,
    unique: Bytes,
    data: Bytes,
    priority: Priority,
    background: bool,
    /// Foreground clients waiting for the result: a connection appears once per submission,
    /// and gets every WORK_* packet once per submission, as gearmand does (a PHP task set
    /// with the same unique id several times waits for a result per task).
    clients: Vec<ConnId>,
    /// The worker connection running it.
    worker: Option<ConnId>,
    numerator: u32,
    denominator: u32,
    /// Times it was handed to a worker that went away without a result.
    retries: u32,
    /// Cancelled by `cancel job`: dropped when it reaches the head of its queue.
    cancelled: bool,
    /// Order of arrival, for "oldest first" across functions.
    seq: u64,
    /// Bumped on every assignment, so a timer only fails the assignment it was set for.
    assignment: u64,
    /// Its key in the persistent queue (its unique id, or one made up), once stored.
    stored: Option<Bytes>,
    /// Seconds since the epoch before which it is not handed out (SUBMIT_JOB_EPOCH); 0 = at
    /// once. While that time is ahead it waits in `State::scheduled`, not in a queue.
    when: i64,
}

impl Job {
    /// A job not yet queued: foreground, no clients yet, never handed out.
    fn new(
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
        priority: Priority,
        when: i64,
    ) -> Job {
        Job {
            handle,
            function,
            unique,
            data,
            priority,
            background: false,
            clients: Vec::new(),
            worker: None,
            numerator: 0,
            denominator: 0,
            retries: 0,
            cancelled: false,
            seq: 0,
            assignment: 0,
            stored: None,
            when,
        }
    }
}

#[derive(Default)]
struct Function {
    queues: [VecDeque<JobId>; 3],
    /// Jobs waiting for their time (counted as queued, as gearmand does).
    scheduled: usize,
    running: usize,
    /// Worker connections that registered the function.
    workers: usize,
    /// Per priority; zero or less = unlimited.
    max_queue: [i64; 3],
    /// Jobs made (merged submissions not counted), completed, and failed (WORK_FAIL, an
    /// exception, or the server's own verdict), since the server started.
    submitted: u64,
    completed: u64,
    failed: u64,
}

/// One function's figures on the built-in server, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FunctionFigures {
    pub name: String,
    /// Queued jobs by priority: high, normal, low.
    pub queued: [usize; 3],
    /// Queued jobs waiting for their time.
    pub scheduled: usize,
    pub running: usize,
    pub workers: usize,
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
}

impl Function {
    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum::<usize>() + self.scheduled
    }
}

struct Ability {
    function: Bytes,
    timeout: Option<Duration>,
}

pub struct Conn {
    fd: i32,
    ip: IpAddr,
    outbound: mpsc::Sender<ServerOutbound>,
    /// Bytes of packets in `outbound` (see [`queued_len`]); the connection's task takes off
    /// what it writes.
    queued: Arc<AtomicUsize>,
    /// Cancelled to drop a connection from outside its task (its queue overflowed).
    kill: CancellationToken,
    client_id: Option<Bytes>,
    /// Oldest first (listed newest first, as gearmand does), and the same by name.
    abilities: Vec<Ability>,
    can: HashMap<Bytes, Option<Duration>>,
    sleeping: bool,
    exceptions: bool,
    /// Jobs this connection runs, as a worker.
    running: Vec<JobId>,
    /// Jobs this connection waits for, as a client.
    waiting: Vec<JobId>,
    /// The worker said it closes this connection to give its jobs back (a geardriver worker
    /// returning a prefetched job): they are queued again without counting a retry.
    giving_back: bool,
}

/// Work the caller has to do outside the lock.
pub enum Effect {
    /// Fail the job if it is still on that assignment after `after`.
    Timeout {
        job: JobId,
        assignment: u64,
        after: Duration,
    },
    /// The JOB_CREATED for `handle` goes out once the job is on disk; if it cannot be
    /// stored, the client gets an ERROR instead (and the job is dropped, see
    /// [`State::unstored`]).
    Stored { handle: Bytes, stored: Stored },
}

pub struct State {
    jobs: HashMap<JobId, Job>,
    handles: HashMap<Bytes, JobId>,
    /// Foreground and background jobs with a unique id, per function.
    uniques: HashMap<(Bytes, Bytes), JobId>,
    /// The same jobs by unique id alone, oldest first (GET_STATUS_UNIQUE names no function).
    by_unique: HashMap<Bytes, Vec<JobId>>,
    functions: BTreeMap<Bytes, Function>,
    conns: BTreeMap<ConnId, Conn>,
    next_job: JobId,
    next_handle: u64,
    handle_prefix: String,
    version: String,
    /// Hand-outs after which a job whose workers keep dying fails (0 = never).
    job_retries: u32,
    /// Bytes queued for one connection before it is dropped as not reading.
    max_queued_bytes: usize,
    /// Where background jobs are kept across restarts, if anywhere.
    queue: Option<Queue>,
    /// Jobs whose time has not come, by time.
    scheduled: BTreeSet<(i64, JobId)>,
    /// Functions with a job in a queue: what GRAB_JOB looks at when a worker can do more.
    ready: std::collections::HashSet<Bytes>,
    /// Made-up unique ids for stored jobs that have none: this run's start, then a count.
    key_prefix: String,
    next_key: u64,
}

fn error(code: &str, text: &str) -> Packet {
    Packet::Error {
        code: Bytes::copy_from_slice(code.as_bytes()),
        text: Bytes::copy_from_slice(text.as_bytes()),
    }
}

impl State {
    pub fn new(host: &str, job_retries: u32, max_queued_bytes: usize) -> State {
        State {
            jobs: HashMap::new(),
            handles: HashMap::new(),
            uniques: HashMap::new(),
            by_unique: HashMap::new(),
            functions: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_job: 1,
            next_handle: 1,
            handle_prefix: format!("H:{host}:"),
            version: format!("geardriver {}", env!("CARGO_PKG_VERSION")),
            job_retries,
            max_queued_bytes,
            queue: None,
            scheduled: BTreeSet::new(),
            ready: Default::default(),
            key_prefix: format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ),
            next_key: 0,
        }
    }

    /// Keeps background jobs in `queue` from now on, starting with the jobs it held: they
    /// are queued again in the order they arrived, with their unique ids.
    /// Every function's figures, by name, and the connections open.
    pub fn figures(&self) -> (Vec<FunctionFigures>, usize) {
        let functions = self
            .functions
            .iter()
            .map(|(name, f)| FunctionFigures {
                name: String::from_utf8_lossy(name).into_owned(),
                queued: [0, 1, 2].map(|p| f.queues[p].len()),
                scheduled: f.scheduled,
                running: f.running,
                workers: f.workers,
                submitted: f.submitted,
                completed: f.completed,
                failed: f.failed,
            })
            .collect();
        (functions, self.conns.len())
    }

    pub fn persist(&mut self, queue: Queue, restored: Vec<StoredJob>) {
        debug_assert!(self.queue.is_none());
        for job in restored {
            self.restore(job);
        }
        self.queue = Some(queue);
    }

    /// Background jobs held in memory only, and the persistent queue (closed: everything
    /// queued for it is written), for the server's last words.
    pub fn close(&mut self) -> (usize, Option<std::path::PathBuf>) {
        let unstored = self
            .jobs
            .values()
            .filter(|j| j.background && j.stored.is_none())
            .count();
        let path = self.queue.take().map(|mut queue| {
            queue.close();
            queue.path().to_path_buf()
        });
        (unstored, path)
    }

    pub fn connect(
        &mut self,
        id: ConnId,
        fd: i32,
        ip: IpAddr,
        outbound: mpsc::Sender<ServerOutbound>,
        queued: Arc<AtomicUsize>,
        kill: CancellationToken,
    ) {
        self.conns.insert(
            id,
            Conn {
                fd,
                ip,
                outbound,
                queued,
                kill,
                client_id: None,
                abilities: Vec::new(),
                can: Default::default(),
                sleeping: false,
                giving_back: false,
                exceptions: false,
                running: Vec::new(),
                waiting: Vec::new(),
            },
        );
    }

    /// Sends to another connection; one that cannot keep up (its queue full in packets or
    /// past the byte budget) is dropped.
    fn send(&mut self, to: ConnId, packet: Packet) {
        if let Some(conn) = self.conns.get(&to) {
            let len = queued_len(&packet);
            let over = conn.queued.fetch_add(len, Ordering::Relaxed) + len > self.max_queued_bytes;
            if over
                || conn
                    .outbound
                    .try_send(ServerOutbound::Packet(packet))
                    .is_err()
            {
                tracing::warn!(
                    conn = to,
                    "job server: a connection is not reading its replies; dropping it"
                );
                conn.kill.cancel();
            }
        }
    }

    /// Wakes every sleeping worker that can do `function`.
    fn wake(&mut self, function: &Bytes) {
        let sleepers: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.sleeping && c.can.contains_key(function))
            .map(|(&id, _)| id)
            .collect();
        for id in sleepers {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.sleeping = false;
            }
            self.send(id, Packet::Noop);
        }
    }

    /// Handles one binary packet from connection `id`. Replies for `id` are appended to
    /// `out`; effects for the caller to `effects`.
    pub fn packet(
        &mut self,
        id: ConnId,
        packet: Packet,
        out: &mut Vec<ServerOutbound>,
        effects: &mut Vec<Effect>,
    ) {
        let mut reply = |p: Packet| out.push(ServerOutbound::Packet(p));
        match packet {
            Packet::CanDo { function } => self.can_do(id, function, None),
            Packet::CanDoTimeout {
                function,
                timeout_ms,
            } => {
                let timeout = (timeout_ms > 0)
                    .then(|| Duration::from_millis(u64::from(timeout_ms)).max(MIN_WORKER_TIMEOUT));
                self.can_do(id, function, timeout);
            }
            Packet::CantDo { function } => self.cant_do(id, &function),
            Packet::ResetAbilities => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.can.clear();
                for ability in std::mem::take(&mut conn.abilities) {
                    if let Some(f) = self.functions.get_mut(&ability.function) {
                        f.workers = f.workers.saturating_sub(1);
                    }
                }
            }
            Packet::SetClientId { id: client_id } => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.client_id = Some(client_id);
                }
            }
            Packet::PreSleep => {
                self.release_due();
                if self.has_work_for(id) {
                    reply(Packet::Noop);
                } else if let Some(conn) = self.conns.get_mut(&id) {
                    conn.sleeping = true;
                }
            }
            Packet::GrabJob | Packet::GrabJobUniq | Packet::GrabJobAll => {
                let uniq = !matches!(packet, Packet::GrabJob);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.sleeping = false;
                }
                match self.take(id, effects) {
                    None => reply(Packet::NoJob),
                    Some(job) => {
                        let job = &self.jobs[&job];
                        // gearmand answers GRAB_JOB_ALL with JOB_ASSIGN_UNIQ too (no reducer).
                        reply(if uniq {
                            Packet::JobAssignUniq {
                                handle: job.handle.clone(),
                                function: job.function.clone(),
                                unique: job.unique.clone(),
                                data: job.data.clone(),
                            }
                        } else {
                            Packet::JobAssign {
                                handle: job.handle.clone(),
                                function: job.function.clone(),
                                data: job.data.clone(),
                            }
                        });
                    }
                }
            }
            Packet::Submit {
                priority,
                background,
                function,
                unique,
                data,
            } => {
                let submission = jobs::Submission {
                    priority,
                    background,
                    function,
                    unique,
                    data,
                    when: 0,
                };
                reply(self.submit(id, submission, effects))
            }
            // A background job not handed out before `epoch` (gearmand 1.1 runs it as soon
            // as its time has come; an epoch already past runs at once).
            Packet::SubmitJobEpoch {
                function,
                unique,
                epoch,
                data,
            } => {
                let submission = jobs::Submission {
                    priority: Priority::Normal,
                    background: true,
                    function,
                    unique,
                    data,
                    when: i64::try_from(epoch).unwrap_or(i64::MAX),
                };
                reply(self.submit(id, submission, effects))
            }
            Packet::GetStatus { handle } => {
                let status = self.handles.get(&handle).map(|id| &self.jobs[id]);
                reply(Packet::StatusRes {
                    known: status.is_some(),
                    running: status.is_some_and(|j| j.worker.is_some()),
                    numerator: status.map_or(0, |j| j.numerator),
                    denominator: status.map_or(0, |j| j.denominator),
                    handle,
                });
            }
            Packet::GetStatusUnique { unique } => {
                let job = self
                    .by_unique
                    .get(&unique)
                    .and_then(|ids| ids.first())
                    .map(|id| &self.jobs[id]);
                reply(Packet::StatusResUnique {
                    known: job.is_some(),
                    running: job.is_some_and(|j| j.worker.is_some()),
                    numerator: job.map_or(0, |j| j.numerator),
                    denominator: job.map_or(0, |j| j.denominator),
                    waiting: job.map_or(0, |j| u32::try_from(j.clients.len()).unwrap_or(u32::MAX)),
                    unique,
                });
            }
            Packet::EchoReq { data } => {
                if data == crate::gearman::worker::GIVE_BACK {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.giving_back = true;
                    }
                }
                reply(Packet::EchoRes { data })
            }
            Packet::OptionReq { option } => {
                if &option[..] == b"exceptions" {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.exceptions = true;
                    }
                    reply(Packet::OptionRes { option });
                } else {
                    reply(error(
                        "UNKNOWN_OPTION",
                        "Server does not recognize given option",
                    ));
                }
            }
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => match self.held_by(id, &handle) {
                None => reply(not_found(NotFound::Result)),
                Some(job) => {
                    let j = self.jobs.get_mut(&job).expect("indexed");
                    j.numerator = numerator;
                    j.denominator = denominator;
                    self.relay(job, |_| Packet::WorkStatus {
                        handle: handle.clone(),
                        numerator,
                        denominator,
                    });
                }
            },
            Packet::WorkData { handle, data } => {
                self.relay_or_not_found(id, &handle, out, NotFound::Update, |_| Packet::WorkData {
                    handle: handle.clone(),
                    data: data.clone(),
                })
            }
            Packet::WorkWarning { handle, data } => {
                self.relay_or_not_found(id, &handle, out, NotFound::Update, |_| {
                    Packet::WorkWarning {
                        handle: handle.clone(),
                        data: data.clone(),
                    }
                })
            }
            Packet::WorkComplete { handle, data } => {
                self.finish(id, &handle, out, NotFound::Result, true, |_| {
                    Packet::WorkComplete {
                        handle: handle.clone(),
                        data: data.clone(),
                    }
                })
            }
            Packet::WorkFail { handle } => {
                self.finish(id, &handle, out, NotFound::Result, false, |_| {
                    Packet::WorkFail {
                        handle: handle.clone(),
                    }
                })
            }
            Packet::WorkException { handle, data } => {
                self.finish(id, &handle, out, NotFound::Exception, false, |exceptions| {
                    if exceptions {
                        Packet::WorkException {
                            handle: handle.clone(),
                            data: data.clone(),
                        }
                    } else {
                        Packet::WorkFail {
                            handle: handle.clone(),
                        }
                    }
                })
            }
            // Cron-style and reduce jobs are not run here; gearmand 1.1 answers the same to
            // SUBMIT_JOB_SCHED and ALL_YOURS.
            Packet::SubmitJobSched { .. } | Packet::SubmitReduceJob { .. } | Packet::AllYours => {
                reply(error("INVALID_COMMAND", "Command not expected"))
            }
            // Response packets never decode on a server connection (wrong magic).
            other => reply(error(
                "INVALID_COMMAND",
                &format!("{} is not a request", other.packet_type()),
            )),
        }
    }

    fn can_do(&mut self, id: ConnId, function: Bytes, timeout: Option<Duration>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(known) = conn.can.get_mut(&function) {
            *known = timeout;
            if let Some(ability) = conn.abilities.iter_mut().find(|a| a.function == function) {
                ability.timeout = timeout;
            }
            return;
        }
        conn.can.insert(function.clone(), timeout);
        conn.abilities.push(Ability {
            function: function.clone(),
            timeout,
        });
        self.functions.entry(function).or_default().workers += 1;
    }

    fn cant_do(&mut self, id: ConnId, function: &Bytes) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.can.remove(function).is_some() {
            conn.abilities.retain(|a| a.function != function);
            if let Some(f) = self.functions.get_mut(function) {
                f.workers = f.workers.saturating_sub(1);
            }
        }
    }

    /// A connection went away: it stops waiting for its jobs (a foreground job nobody waits
    /// for any more is dropped unrun, as gearmand does), its abilities are forgotten, and the
    /// jobs it ran go back to the head of their queues, or fail once they have been handed
    /// out `job_retries` times (a poison job that kills every worker).
    pub fn disconnect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for ability in &conn.abilities {
            if let Some(f) = self.functions.get_mut(&ability.function) {
                f.workers = f.workers.saturating_sub(1);
            }
        }
        let mut abandoned = Vec::new();
        for job_id in conn.waiting {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.clients.retain(|&c| c != id);
                if !job.background && job.clients.is_empty() && job.worker.is_none() {
                    abandoned.push(job_id);
                }
            }
        }
        for job_id in abandoned {
            self.remove(job_id);
        }
        let mut requeued = Vec::new();
        for job_id in conn.running.into_iter().rev() {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            job.worker = None;
            if !conn.giving_back {
                job.retries += 1;
            }
            let (retries, background, waited_for, priority) = (
                job.retries,
                job.background,
                !job.clients.is_empty(),
                job.priority,
            );
            let function = job.function.clone();
            let f = self.functions.get_mut(&function).expect("job's function");
            f.running = f.running.saturating_sub(1);
            if self.job_retries > 0 && retries >= self.job_retries {
                let job = &self.jobs[&job_id];
                let reason = format!(
                    "job_retries: the job was handed out {} time{} and each worker went away without a result",
                    job.retries,
                    if job.retries == 1 { "" } else { "s" }
                );
                tracing::warn!(
                    handle = %String::from_utf8_lossy(&job.handle),
                    function = %String::from_utf8_lossy(&job.function),
                    retries = job.retries,
                    "job server: giving up on a job whose workers keep going away; failing it"
                );
                self.fail_job(job_id, &reason);
            } else if !background && !waited_for {
                // Nobody waits for its result any more.
                self.remove(job_id);
            } else {
                f.queues[slot(priority)].push_front(job_id);
                self.ready.insert(function.clone());
                requeued.push(function);
            }
        }
        for function in requeued {
            self.wake(&function);
        }
    }

    /// Tells every connection the server is going away.
    pub fn shutdown_notice(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.send(id, error("SHUTDOWN", "the job server is shutting down"));
        }
    }
}

/// Which WORK_* packet named a job its connection does not hold: gearmand words the
/// JOB_NOT_FOUND error differently for each.
#[derive(Clone, Copy)]
enum NotFound {
    /// WORK_DATA, WORK_WARNING.
    Update,
    /// WORK_STATUS, WORK_COMPLETE, WORK_FAIL.
    Result,
    Exception,
}

/// About the bytes a packet queued for another connection holds: its variable parts and a
/// header. The connection's task subtracts the same when it writes the packet.
pub fn queued_len(packet: &Packet) -> usize {
    const HEADER: usize = 12;
    HEADER
        + match packet {
            Packet::WorkData { handle, data }
            | Packet::WorkWarning { handle, data }
            | Packet::WorkComplete { handle, data }
            | Packet::WorkException { handle, data } => handle.len() + data.len(),
            Packet::WorkFail { handle } | Packet::WorkStatus { handle, .. } => handle.len() + 24,
            Packet::Error { code, text } => code.len() + text.len(),
            _ => 0,
        }
}

fn not_found(packet: NotFound) -> Packet {
    error(
        "JOB_NOT_FOUND",
        match packet {
            NotFound::Update => "Job does not exist on server",
            NotFound::Result => "Job given in work result not found",
            NotFound::Exception => "An exception was received for a job that does not exist",
        },
    )
}

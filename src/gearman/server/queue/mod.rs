//! The built-in server's persistent queue: background jobs kept in an SQLite file with
//! gearmand's libsqlite3 layout (`gearman_queue(unique_key, function_name, priority, data,
//! when_to_run)`), so that a queue file gearmand wrote can be taken over as it is.
//!
//! A job is written before its JOB_CREATED is sent and deleted once it completes or fails;
//! at start every row is restored, in arrival order within its priority. Writes are grouped:
//! a commit takes every operation queued before it, so that durability costs one commit per
//! group, not per job (gearmand's SQLite queue commits each job on its own). A commit is one
//! append to the queue's own log ([`log`]; with `full`, forced to the disk), which a thread
//! applies to the table every [`APPLY_EVERY`] in one transaction.
//!
//! [`Sync`] chooses what a crash may cost, as Redis's `appendfsync` does.

mod log;

use crate::gearman::packet::Priority;
use bytes::Bytes;
use log::{Change, Log};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// gearmand's table name.
pub const TABLE: &str = "gearman_queue";

/// What a crash may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sync {
    /// Every acknowledged job survives the server process crashing or being killed; a power
    /// loss or an OS crash may lose the last second or so (a commit is written to the OS,
    /// not forced to the disk; the table is SQLite's with `synchronous=NORMAL`).
    #[default]
    Normal,
    /// Every acknowledged job survives a power loss too: each group of jobs is forced to the
    /// disk (fdatasync of the log) before the jobs are acknowledged; the table follows with
    /// `synchronous=FULL`.
    Full,
}

impl Sync {
    pub fn parse(text: &str) -> Option<Sync> {
        match text {
            "normal" => Some(Sync::Normal),
            "full" => Some(Sync::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sync::Normal => "normal",
            Sync::Full => "full",
        }
    }
}

/// One stored job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJob {
    /// The job's unique id (one the server made up when the client gave none).
    pub unique: Bytes,
    pub function: Bytes,
    pub priority: Priority,
    pub data: Bytes,
    /// Seconds since the epoch before which the job is not handed out; 0 = at once.
    pub when: i64,
}

/// Why the queue could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("persistent queue {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("persistent queue {path}: row {row}: {reason}")]
    Row {
        path: PathBuf,
        row: i64,
        reason: String,
    },
}

/// What a job's writer is told once its job is on disk (or why it is not).
pub type Stored = oneshot::Receiver<Result<(), Arc<str>>>;

enum Op {
    Add(StoredJob, oneshot::Sender<Result<(), Arc<str>>>),
    Done { unique: Bytes, function: Bytes },
}

/// What the server's connections share: the operations not yet written, in the order the
/// server's state made them, and the database.
struct Shared {
    pending: Mutex<Vec<Op>>,
    /// Told when an operation is queued (a `full` commit waiting for its siblings listens).
    queued: std::sync::Condvar,
    /// How many new jobs the commit waiting on `queued` waits for, 0 if none waits (one
    /// commit gathers at a time; changed with `pending` locked): a push wakes it only once
    /// they are there (a wake is a system call, even with nobody to wake, and each wake
    /// before then would only put it back to sleep).
    gathering: std::sync::atomic::AtomicUsize,
    /// The `full` commit delay's memory of recent groups (held with the database's lock).
    siblings: Mutex<Siblings>,
    /// A `full` commit is under way or about to be, by a connection or a thread of the
    /// runtime's blocking pool: the connections whose jobs are queued meanwhile leave them to
    /// it and wait for their acknowledgements without blocking a thread (leader and
    /// followers).
    leading: std::sync::atomic::AtomicBool,
    db: Mutex<rusqlite::Connection>,
    /// Where a commit goes (see [`log`]); the table follows.
    log: Mutex<Log>,
    path: PathBuf,
    failures: Mutex<crate::logging::Throttle>,
    /// The same for the table's failures (its own, so that one kind never hides the other).
    table_failures: Mutex<crate::logging::Throttle>,
    /// The last commit failed: the next that works says so.
    failing: std::sync::atomic::AtomicBool,
    /// The table (or the log's files) could not be written when last tried.
    table_failing: std::sync::atomic::AtomicBool,
    /// A commit of deletions is due within [`DELETIONS_WITHIN`].
    flush_due: std::sync::atomic::AtomicBool,
}

/// The handle the server's state holds. Writes are queued in order and committed in groups,
/// by the connection that needs its jobs acknowledged, on its own thread (cheaper than waking
/// another thread and being woken back, twice a job: measured with `full` and one client,
/// 4,132 jobs/s against 3,337 with a writer thread). With `full`, one commit (an fdatasync)
/// is under way at a time: the connections whose jobs arrive meanwhile leave them to the next,
/// which a thread of the runtime's blocking pool makes for all of them at once (group commit),
/// and wait for their acknowledgements without holding a thread.
pub struct Queue {
    shared: Arc<Shared>,
    sync: Sync,
    /// Dropped to stop the checkpoints.
    stop_checkpoints: Option<mpsc::Sender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The file's lock: one server per queue file (released by `close`).
    owner: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.shared.path)
            .field("sync", &self.sync)
            .finish()
    }
}

impl Queue {
    /// Opens (or creates) the queue file and reads every job in it, in arrival order.
    pub fn open(path: &Path, sync: Sync) -> Result<(Queue, Vec<StoredJob>), QueueError> {
        let open_error = |e: &dyn std::fmt::Display| QueueError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let owner = own(path).map_err(|e| open_error(&e))?;
        let mut db = rusqlite::Connection::open(path).map_err(|e| open_error(&e))?;
        db.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(&e))?;
        // SQLite's write-ahead log: the table's commit is one append, and an operator's
        // reader never blocks it.
        let mode: String = db
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(|e| open_error(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(&format!(
                "cannot use a write-ahead log (journal_mode is {mode})"
            )));
        }
        let synchronous = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        // Checkpoints (copying SQLite's log into the file, with an fsync or two) run on the
        // checkpoint thread, not in a commit a client waits for; an oversized log is cut back.
        db.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA wal_autocheckpoint=0; \
             PRAGMA journal_size_limit={WAL_SIZE_LIMIT}"
        ))
        .map_err(|e| open_error(&e))?;
        prepare_table(&db).map_err(|e| open_error(&e))?;
        let next_log = replay_logs(&mut db, path).map_err(|e| open_error(&e))?;
        let jobs = restore(&db, path)?;
        let log =
            Mutex::new(Log::start(path, next_log, sync == Sync::Full).map_err(|e| open_error(&e))?);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            queued: std::sync::Condvar::new(),
            gathering: std::sync::atomic::AtomicUsize::new(0),
            siblings: Mutex::new(Siblings::default()),
            leading: std::sync::atomic::AtomicBool::new(false),
            db: Mutex::new(db),
            log,
            path: path.to_path_buf(),
            failures: Mutex::new(crate::logging::Throttle::new(
                std::time::Duration::from_secs(10),
            )),
            table_failures: Mutex::new(crate::logging::Throttle::new(
                std::time::Duration::from_secs(10),
            )),
            failing: std::sync::atomic::AtomicBool::new(false),
            table_failing: std::sync::atomic::AtomicBool::new(false),
            flush_due: std::sync::atomic::AtomicBool::new(false),
        });
        let (stop_checkpoints, checkpointer) =
            checkpoints(shared.clone()).map_err(|e| open_error(&e))?;
        Ok((
            Queue {
                shared,
                sync,
                stop_checkpoints: Some(stop_checkpoints),
                checkpointer: Some(checkpointer),
                owner: Some(owner),
            },
            jobs,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queues a job for writing; the receiver hears once it is on disk. The caller commits
    /// ([`Committer::commit`]) before it waits.
    pub fn add(&self, job: StoredJob) -> Stored {
        let (tx, rx) = oneshot::channel();
        self.shared.push(Op::Add(job, tx));
        rx
    }

    /// Queues the deletion of a job that completed or failed (committed with the next group,
    /// or soon: [`Committer::commit_soon`]).
    pub fn done(&self, unique: Bytes, function: Bytes) {
        self.shared.push(Op::Done { unique, function });
    }

    /// What commits the queue from outside the server's state (see [`Committer`]).
    pub fn committer(&self) -> Committer {
        Committer {
            shared: self.shared.clone(),
            sync: self.sync,
        }
    }

    /// Writes what is queued and stops the checkpoints.
    pub fn close(&mut self) {
        if self.owner.is_none() {
            return; // closed already (a stop closes, then the drop)
        }
        self.stop_checkpoints = None;
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
        self.shared.commit_pending();
        let applied = self.shared.apply();
        // A clean stop leaves no write-ahead log beside the file, and no log of changes.
        self.shared.checkpoint("TRUNCATE");
        if applied {
            self.shared.log().remove_all();
        }
        self.owner = None;
    }
}

/// Commits what is queued, from the connection that waits for its jobs to be stored (and
/// from the server's clock, for deletions), without the server state's lock.
#[derive(Clone)]
pub struct Committer {
    shared: Arc<Shared>,
    sync: Sync,
}

impl Committer {
    /// Writes what is queued, now, on the caller's thread: with `normal` a write to the OS;
    /// with `full` a write and an fsync, which a runtime of several threads is told of (its
    /// other tasks move to another thread meanwhile). Nothing queued, nothing done.
    pub fn commit(&self) {
        use std::sync::atomic::Ordering;
        if !self.shared.has_pending() {
            return;
        }
        match self.sync {
            Sync::Normal => {
                self.shared.commit_pending();
            }
            Sync::Full => {
                // A commit is under way: it, or one that follows it, takes what is queued.
                if self.shared.leading.swap(true, Ordering::SeqCst) {
                    return;
                }
                // A lone client's commit blocks its runtime thread for the fsync: handing the
                // thread's other tasks over first (`block_in_place`) cost a lone client more
                // than the fsync's wait costs them (one C client: 6,752 jobs/s against 5,910),
                // while the runtime's other threads serve the other connections. With several
                // clients committing, or one thread in all, they are handed over.
                let several = self
                    .shared
                    .siblings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .several();
                if several || !other_threads() {
                    blocking(|| self.shared.commit_full());
                } else {
                    self.shared.commit_full();
                }
                // This connection's jobs are stored; what was queued meanwhile is committed
                // by a thread of the runtime's blocking pool, not by this connection, whose
                // client is waiting for its answer.
                if let Some(shared) = self.shared.hand_over() {
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) => drop(runtime.spawn_blocking(move || shared.lead())),
                        Err(_) => shared.lead(),
                    }
                }
            }
        }
    }

    /// Writes what is queued within [`DELETIONS_WITHIN`] (a task of the caller's runtime):
    /// the deletions of jobs that finished meanwhile go in one commit instead of one each,
    /// and a job is left to run again only if the server dies in that window.
    pub fn commit_soon(&self) {
        use std::sync::atomic::Ordering;
        if !self.shared.has_pending() || self.shared.flush_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let committer = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DELETIONS_WITHIN).await;
            committer.shared.flush_due.store(false, Ordering::Release);
            committer.commit();
        });
    }
}

/// Whether the caller's runtime has threads besides the caller's to serve other tasks.
fn other_threads() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| {
        h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            && h.metrics().num_workers() >= 2
    })
}

/// Runs `work`, which blocks, on the caller's thread; in a runtime of several threads, its
/// other tasks are handed to another thread first.
fn blocking(work: impl FnOnce()) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// The log, even if a thread panicked holding it (what it holds stays whole: each
    /// change to it is made under the lock in one piece).
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, op: Op) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push(op);
        let wanted = self.gathering.load(std::sync::atomic::Ordering::Relaxed);
        let wake = wanted > 0 && adds(&pending) >= wanted;
        drop(pending);
        if wake {
            self.queued.notify_all();
        }
    }

    fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// One write to the log for everything queued so far; every job in it hears the
    /// outcome. Commits are serialised by the log's lock, and each takes the operations
    /// queued before it, so they reach the log in the order they were made. When a commit
    /// fails (disk full), its new jobs are refused to their clients and its deletions are
    /// kept, in order, for the next commit: a finished job is never left to run again.
    /// Returns how many new jobs the group held.
    fn commit_pending(&self) -> usize {
        let mut log = self.log();
        let group = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if group.is_empty() {
            return 0;
        }
        // The jobs move to the log (which keeps them until the table has them); their
        // writers wait for the outcome.
        let mut writers = Vec::new();
        let mut changes = Vec::with_capacity(group.len());
        for op in group {
            changes.push(match op {
                Op::Add(job, stored) => {
                    writers.push(stored);
                    Change::Add(job)
                }
                Op::Done { unique, function } => Change::Done { unique, function },
            });
        }
        let result = log
            .append(&mut changes)
            .map_err(|e| Arc::<str>::from(format!("cannot write its log: {e}")));
        drop(log);
        self.settle(writers, changes, result)
    }

    /// Applies to the table what the log holds (the checkpoint thread and a stop call it).
    /// False if something is left unapplied (the table cannot be written: it is tried
    /// again, and the log keeps it meanwhile).
    fn apply(&self) -> bool {
        let (changes, files) = self.log().take();
        if changes.is_empty() {
            self.log().applied(files);
            return true;
        }
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let written = write_group(&mut db, &changes);
        drop(db);
        let mut log = self.log();
        match written {
            Ok(()) => {
                log.applied(files);
                true
            }
            Err(e) => {
                log.not_applied(changes, files);
                drop(log);
                self.table_failed(&e.to_string());
                false
            }
        }
    }

    /// Copies SQLite's write-ahead log into the file and forces both to the disk (`mode`:
    /// PASSIVE, or TRUNCATE at a stop); then the log files whose changes the table holds go.
    fn checkpoint(&self, mode: &str) {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        // (busy, frames in the log, frames copied): done when not busy and all copied.
        let done = db.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        drop(db);
        if matches!(done, Ok((0, frames, copied)) if frames == copied) {
            let removed = self.log().checkpointed();
            match removed {
                Some(reason) => self.table_failed(&reason),
                None => self.table_written(),
            }
        }
    }

    /// A checkpoint went through and removed what it should: if the table failed before,
    /// and what the log held since has reached it, says so.
    fn table_written(&self) {
        let caught_up = self.log().unapplied.is_empty();
        if caught_up
            && self
                .table_failing
                .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(queue = %self.path.display(), "job server: the persistent queue's table is written again");
        }
    }

    /// Makes the log's next file if it needs one (outside the writers' lock: making one
    /// writes 4 MB and forces it to the disk).
    fn make_spare(&self) {
        if !self.log().spare_needed() {
            return;
        }
        match log::make_spare(&self.path) {
            Ok(file) => self.log().install_spare(file),
            Err(e) => self.table_failed(&e.to_string()),
        }
    }

    /// Logs a failure to write the log (at most once every 10 s): new jobs were refused.
    fn log_failed(&self, reason: &str, refused: usize, kept: usize) {
        self.failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(similar_errors_not_logged) = Self::allow_error(&self.failures) {
            tracing::error!(queue = %self.path.display(), %reason, refused, deletions_kept_for_a_retry = kept, similar_errors_not_logged, "job server: cannot write the persistent queue; new background jobs are refused to their clients until it can");
        }
    }

    /// Logs a failure to write the table or the log's files (at most once every 10 s): jobs
    /// are still taken, and the log holds what the table does not.
    fn table_failed(&self, reason: &str) {
        self.table_failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(similar_errors_not_logged) = Self::allow_error(&self.table_failures) {
            let changes_in_log_only = self.log().unapplied.len();
            tracing::error!(queue = %self.path.display(), %reason, changes_in_log_only, similar_errors_not_logged, "job server: cannot write the persistent queue's table or its log's files; jobs are still taken (their changes are in its log) and it is tried again");
        }
    }

    fn allow_error(throttle: &Mutex<crate::logging::Throttle>) -> Option<u64> {
        throttle.lock().unwrap_or_else(|e| e.into_inner()).allow()
    }

    /// After a `full` commit by the caller, which leads: stops leading, unless operations
    /// were queued meanwhile (their connections left them to the leader) and nobody else
    /// took the lead since: then the caller must have them committed.
    fn hand_over(self: &Arc<Self>) -> Option<Arc<Self>> {
        use std::sync::atomic::Ordering;
        self.leading.store(false, Ordering::SeqCst);
        if !self.has_pending() || self.leading.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(self.clone())
    }

    /// Commits (`full`) until nothing is queued; the caller leads.
    fn lead(self: Arc<Self>) {
        loop {
            self.commit_full();
            if self.hand_over().is_none() {
                return;
            }
        }
    }

    /// A `full` commit, by the one connection or thread that leads: waits a moment for the
    /// jobs of clients that recent groups held (see [`Siblings`]), then commits every
    /// operation queued.
    fn commit_full(&self) {
        let mut siblings = self.siblings.lock().unwrap_or_else(|e| e.into_inner());
        siblings.gather(self);
        let added = self.commit_pending();
        siblings.committed(added);
    }

    /// Tells a group's writers how its commit went; a failed one's deletions (`left`: what
    /// the log did not take) are kept, in order, for the next. Returns how many new jobs
    /// the group held.
    fn settle(
        &self,
        writers: Vec<oneshot::Sender<Result<(), Arc<str>>>>,
        left: Vec<Change>,
        result: Result<(), Arc<str>>,
    ) -> usize {
        use std::sync::atomic::Ordering;
        let added = writers.len();
        for stored in writers {
            let _ = stored.send(result.clone());
        }
        match &result {
            Err(reason) => {
                let mut retry: Vec<Op> = left
                    .into_iter()
                    .filter_map(|change| match change {
                        Change::Done { unique, function } => Some(Op::Done { unique, function }),
                        Change::Add(_) => None,
                    })
                    .collect();
                let kept = retry.len();
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                retry.append(&mut pending);
                *pending = retry;
                drop(pending);
                self.log_failed(reason, added, kept);
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(queue = %self.path.display(), "job server: the persistent queue is written again");
                }
            }
        }
        added
    }
}

fn adds(pending: &[Op]) -> usize {
    pending
        .iter()
        .filter(|op| matches!(op, Op::Add(..)))
        .count()
}

/// The `full` commit delay (PostgreSQL's `commit_delay` with `commit_siblings`):
/// when recent groups held jobs of several clients, the next commit waits a moment for
/// those clients' next jobs, which come as soon as their last ones are acknowledged, so
/// that one fsync stores them all instead of two or three. A lone client never waits.
#[derive(Default)]
struct Siblings {
    /// The most new jobs in one of the recent groups, fading by one a group.
    most: usize,
}

/// The longest a commit waits for its siblings: a few of a local client's round trips, far
/// below an fsync.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(400);

impl Siblings {
    /// Waits until as many new jobs are pending as recent groups held, or
    /// [`COMMIT_DELAY`] has passed; at once when there is nobody to wait for.
    fn gather(&self, shared: &Shared) {
        use std::sync::atomic::Ordering;
        if self.most < 2 {
            return;
        }
        let until = std::time::Instant::now() + COMMIT_DELAY;
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        shared.gathering.store(self.most, Ordering::Relaxed);
        while adds(&pending) < self.most {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            pending = match shared.queued.wait_timeout(pending, left) {
                Ok((pending, _)) => pending,
                Err(e) => e.into_inner().0,
            };
        }
        shared.gathering.store(0, Ordering::Relaxed);
    }

    fn several(&self) -> bool {
        self.most >= 2
    }

    fn committed(&mut self, added: usize) {
        self.most = added.max(self.most.saturating_sub(1));
    }
}

/// Takes the queue file for this server alone (an exclusive `flock`, which SQLite's own
/// `fcntl` locks do not touch): two servers on one file would each run the other's jobs.
fn own(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| e.to_string())?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => {
                "another server is using this queue file (one file serves one server: two \
                 would each run the other's jobs)"
                    .to_string()
            }
            errno => format!("cannot lock it: {errno}"),
        },
    )
}

/// How long a commit waits for a lock someone else holds on the file (an operator's
/// `sqlite3` session) before it fails.
const BUSY_TIMEOUT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(100)
} else {
    std::time::Duration::from_secs(5)
};

/// How soon a finished job's deletion is committed (with `normal`).
pub const DELETIONS_WITHIN: std::time::Duration = std::time::Duration::from_millis(10);

/// How often SQLite's write-ahead log is copied into the file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How often a `normal` log is forced to the disk (by this thread, not by a commit).
const SYNC_NORMAL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the log of changes is applied to the table.
const APPLY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Bytes of write-ahead log kept after a checkpoint has emptied it.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// A thread that applies the log of changes to the table every [`APPLY_EVERY`] (and, with
/// `full`, makes the log's next file ahead of need) and checkpoints SQLite's write-ahead log
/// every [`CHECKPOINT_EVERY`], until the sender is dropped. A checkpoint holds the writers' connection: one that commits go on appending to
/// never catches up, and the log, which restarts from its beginning only after a checkpoint
/// copied all of it, would grow for as long as jobs keep coming (737 MB after 80,000 jobs,
/// never reused, when this thread had a connection of its own). Reused, the log is written
/// over in place: an fsync of blocks already allocated is cheaper than one that also records
/// the file's new size. Writes pause for the checkpoint: it copies only the pages changed
/// since the last one, with an fsync or two.
fn checkpoints(
    shared: Arc<Shared>,
) -> Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>), String> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("queue checkpoints".into())
        .spawn(move || {
            let mut last_checkpoint = std::time::Instant::now();
            let mut last_sync = std::time::Instant::now();
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(APPLY_EVERY) {
                shared.apply();
                shared.make_spare();
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    shared.checkpoint("PASSIVE");
                    last_checkpoint = std::time::Instant::now();
                }
                if last_sync.elapsed() >= SYNC_NORMAL_EVERY {
                    let file = shared.log().to_sync();
                    if let Some(file) = file {
                        let _ = file.sync_data();
                    }
                    last_sync = std::time::Instant::now();
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok((stop, thread))
}

/// Applies to the table the logs of changes a `normal` server left (it stopped before it
/// applied them, or crashed), and removes them; the number for the next log.
fn replay_logs(db: &mut rusqlite::Connection, path: &Path) -> Result<u64, String> {
    log::remove_spare(path);
    let numbers = log::existing(path)?;
    if numbers.is_empty() {
        return Ok(0);
    }
    let (changes, warnings) = log::read(path, &numbers)?;
    for warning in warnings {
        tracing::warn!(queue = %path.display(), "job server: {warning}");
    }
    write_group(db, &changes).map_err(|e| format!("cannot apply its logs to the table: {e}"))?;
    // Forced to the disk before the logs go.
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| format!("cannot write the table: {e}"))?;
    tracing::info!(queue = %path.display(), changes = changes.len(), "job server: the changes logged before the last stop are in the table");
    // A log left behind would be applied again at every start, without the deletions of
    // the newer ones: the server does not start until it can remove them.
    if let (_, Some(reason)) = log::remove(path, &numbers) {
        return Err(format!(
            "{reason} (its changes are in the table; a log left there would bring finished \
             jobs back at the next start)"
        ));
    }
    // Every log went: the numbers start again.
    Ok(0)
}

/// Creates gearmand's table, or adds `when_to_run` to one an older gearmand made.
fn prepare_table(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (unique_key TEXT, function_name TEXT, \
         priority INTEGER, data BLOB, when_to_run INTEGER, \
         PRIMARY KEY (unique_key, function_name))"
    ))?;
    let has_when = db
        .prepare(&format!("SELECT when_to_run FROM {TABLE} LIMIT 0"))
        .is_ok();
    if !has_when {
        db.execute_batch(&format!(
            "ALTER TABLE {TABLE} ADD COLUMN when_to_run INTEGER"
        ))?;
    }
    Ok(())
}

/// Every stored job, in arrival order (SQLite's rowid: `INSERT OR REPLACE` gives a replaced
/// job a new one, as gearmand's queue does). A row that cannot be a job is named in a warning
/// and left in the file, for the operator to mend.
fn restore(db: &rusqlite::Connection, path: &Path) -> Result<Vec<StoredJob>, QueueError> {
    let open_error = |e: rusqlite::Error| QueueError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut select = db
        .prepare(&format!(
            "SELECT rowid, unique_key, function_name, priority, data, when_to_run \
             FROM {TABLE} ORDER BY rowid"
        ))
        .map_err(open_error)?;
    let mut rows = select.query([]).map_err(open_error)?;
    let mut jobs = Vec::new();
    while let Some(row) = rows.next().map_err(open_error)? {
        let rowid: i64 = row.get(0).map_err(open_error)?;
        match stored_job(row) {
            Ok(job) => jobs.push(job),
            Err(reason) => {
                let skipped = QueueError::Row {
                    path: path.to_path_buf(),
                    row: rowid,
                    reason,
                };
                tracing::warn!("{skipped}; the row is skipped and left in the file");
            }
        }
    }
    Ok(jobs)
}

/// A row as a job, or what is wrong with it.
fn stored_job(row: &rusqlite::Row<'_>) -> Result<StoredJob, String> {
    let value = |i: usize| row.get_ref(i).map_err(|e| e.to_string());
    let bytes = |i: usize, name: &str| -> Result<Bytes, String> {
        match value(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(Bytes::copy_from_slice(b)),
            ValueRef::Null if name == "data" => Ok(Bytes::new()),
            other => Err(format!("{name} is {}, not text", describe(other))),
        }
    };
    let function = bytes(2, "function_name")?;
    if function.is_empty() {
        return Err("function_name is empty".into());
    }
    let priority = match value(3)? {
        ValueRef::Integer(0) => Priority::High,
        ValueRef::Integer(1) | ValueRef::Null => Priority::Normal,
        ValueRef::Integer(2) => Priority::Low,
        other => {
            return Err(format!(
                "priority is {}; gearmand writes 0 (high), 1 (normal) or 2 (low)",
                describe(other)
            ));
        }
    };
    let when = match value(5)? {
        ValueRef::Integer(n) => n.max(0),
        ValueRef::Null => 0,
        other => return Err(format!("when_to_run is {}, not a number", describe(other))),
    };
    Ok(StoredJob {
        unique: bytes(1, "unique_key")?,
        function,
        priority,
        data: bytes(4, "data")?,
        when,
    })
}

fn describe(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("a {}-byte blob", b.len()),
    }
}

/// Bytes bound as SQLite TEXT, as gearmand binds unique ids and function names (which need
/// not be UTF-8).
struct Text<'a>(&'a [u8]);

impl rusqlite::ToSql for Text<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

fn priority_number(priority: Priority) -> i64 {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// One transaction for `group`. Its statements, BEGIN and COMMIT included, are prepared
/// once per connection (rusqlite's `transaction()` parses BEGIN and COMMIT anew each time:
/// 4% of a `normal` server's time taking jobs from one client).
fn write_group(db: &mut rusqlite::Connection, group: &[Change]) -> rusqlite::Result<()> {
    db.prepare_cached("BEGIN")?.execute([])?;
    let written = write_ops(db, group).and_then(|()| {
        db.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    });
    if written.is_err() && !db.is_autocommit() {
        let _ = db.execute_batch("ROLLBACK");
    }
    written
}

/// Rows a multi-row INSERT takes at once, largest first: a run of new jobs goes in as few
/// statements of these sizes as it can (each size prepared once), saving each row a
/// statement's execution of its own.
const INSERT_ROWS: [usize; 4] = [64, 16, 4, 1];

fn write_ops(tx: &rusqlite::Connection, group: &[Change]) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached(&format!(
        "DELETE FROM {TABLE} WHERE unique_key = ?1 AND function_name = ?2"
    ))?;
    let mut rest = group;
    while let Some(first) = rest.first() {
        if let Change::Done { unique, function } = first {
            delete.execute(rusqlite::params![Text(unique), Text(function)])?;
            rest = &rest[1..];
            continue;
        }
        // A run of new jobs, in order (rows, and so restore order, follow it).
        let run: Vec<&StoredJob> = rest
            .iter()
            .map_while(|c| match c {
                Change::Add(job) => Some(job),
                Change::Done { .. } => None,
            })
            .collect();
        rest = &rest[run.len()..];
        insert_rows(tx, &run)?;
    }
    Ok(())
}

/// Inserts `jobs` in order, in statements of [`INSERT_ROWS`] rows.
fn insert_rows(tx: &rusqlite::Connection, mut jobs: &[&StoredJob]) -> rusqlite::Result<()> {
    while !jobs.is_empty() {
        let rows = INSERT_ROWS
            .into_iter()
            .find(|&n| n <= jobs.len())
            .unwrap_or(1);
        let (chunk, after) = jobs.split_at(rows);
        let values = vec!["(?, ?, ?, ?, ?)"; rows].join(", ");
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO {TABLE} \
             (priority, unique_key, function_name, data, when_to_run) VALUES {values}"
        ))?;
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(rows * 5);
        let fields: Vec<_> = chunk
            .iter()
            .map(|job| {
                (
                    priority_number(job.priority),
                    Text(&job.unique),
                    Text(&job.function),
                    &job.data[..],
                    job.when,
                )
            })
            .collect();
        for (priority, unique, function, data, when) in &fields {
            params.extend([
                priority as &dyn rusqlite::ToSql,
                unique,
                function,
                data,
                when,
            ]);
        }
        insert.execute(params.as_slice())?;
        jobs = after;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(unique: &str, function: &str, priority: Priority, when: i64) -> StoredJob {
        StoredJob {
            unique: Bytes::copy_from_slice(unique.as_bytes()),
            function: Bytes::copy_from_slice(function.as_bytes()),
            priority,
            data: Bytes::from_static(b"\0data\xff"),
            when,
        }
    }

    #[tokio::test]
    async fn jobs_survive_a_reopen_in_arrival_order_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let (mut queue, restored) = Queue::open(&path, Sync::Normal).unwrap();
        assert!(restored.is_empty());
        let jobs = [
            job("a", "f", Priority::Low, 0),
            job("b", "f", Priority::High, 0),
            job("c", "g", Priority::Normal, 2_000_000_000),
        ];
        for j in &jobs {
            let stored = queue.add(j.clone());
            queue.committer().commit();
            stored.await.unwrap().unwrap();
        }
        queue.done(Bytes::from_static(b"b"), Bytes::from_static(b"f"));
        queue.close();
        let (_queue, restored) = Queue::open(&path, Sync::Full).unwrap();
        assert_eq!(restored, vec![jobs[0].clone(), jobs[2].clone()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_full_sync_connections_committing_at_once_all_get_their_jobs_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let (mut queue, _) = Queue::open(&path, Sync::Full).unwrap();
        let stored: Vec<Stored> = (0..50)
            .map(|i| queue.add(job(&format!("u{i}"), "f", Priority::Normal, 0)))
            .collect();
        // Eight connections commit at once: whichever holds the file commits everything
        // queued; the others find their jobs already stored.
        let committers: Vec<_> = (0..8)
            .map(|_| {
                let committer = queue.committer();
                tokio::spawn(async move { committer.commit() })
            })
            .collect();
        for c in committers {
            c.await.unwrap();
        }
        for s in stored {
            tokio::time::timeout(std::time::Duration::from_secs(10), s)
                .await
                .expect("acknowledged")
                .unwrap()
                .unwrap();
        }
        queue.done(Bytes::from_static(b"u0"), Bytes::from_static(b"f"));
        queue.committer().commit_soon();
        let applied = async {
            while uniques(&path).len() != 49 {
                tokio::time::sleep(APPLY_EVERY).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), applied)
            .await
            .expect("the deletion reaches the table soon, without a close");
        queue.close();
        let (_queue, restored) = Queue::open(&path, Sync::Normal).unwrap();
        assert_eq!(restored.len(), 49);
        assert_eq!(&restored[0].unique[..], b"u1");
    }

    // Found trying issue 14: a job that finished while the file could not be written (disk
    // full) kept its row, and ran again at the next start. Deletions are kept for a retry;
    // new jobs in a failed commit are refused to their clients.
    #[tokio::test]
    async fn a_deletion_that_fails_is_retried_and_new_jobs_are_refused() {
        for sync in [Sync::Normal, Sync::Full] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("queue.sqlite");
            let (mut queue, _) = Queue::open(&path, sync).unwrap();
            let stored = queue.add(job("a", "f", Priority::Normal, 0));
            queue.committer().commit();
            stored.await.unwrap().unwrap();
            // The disk is full: the log's next write fails.
            queue
                .shared
                .log
                .lock()
                .unwrap()
                .write_to_for_test(std::path::Path::new("/dev/full"));
            queue.done(Bytes::from_static(b"a"), Bytes::from_static(b"f"));
            let refused = queue.add(job("b", "f", Priority::Normal, 0));
            queue.committer().commit();
            let err = refused.await.unwrap().unwrap_err();
            assert!(err.contains("No space left"), "{sync:?}: {err}");
            // The log went on in a new file; the deletion kept goes with the next commit.
            queue.committer().commit();
            queue.close();
            let (_queue, restored) = Queue::open(&path, Sync::Normal).unwrap();
            assert!(restored.is_empty(), "{sync:?}: {restored:?}");
        }
    }

    /// The rows of the table, by unique id.
    fn uniques(path: &Path) -> Vec<String> {
        let db = rusqlite::Connection::open(path).unwrap();
        let mut select = db
            .prepare(&format!("SELECT unique_key FROM {TABLE} ORDER BY rowid"))
            .unwrap();
        select
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    // A group's new jobs go in by multi-row INSERTs (64, 16, 4, 1 rows): rows keep the
    // group's order, a deletion between two runs applies between them, and a job given
    // again replaces the earlier row, in the same statement or not (as two INSERTs would).
    #[test]
    fn runs_of_new_jobs_keep_their_order_deletions_and_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let mut db = rusqlite::Connection::open(&path).unwrap();
        prepare_table(&db).unwrap();
        let add = |u: String| Change::Add(job(&u, "f", Priority::Normal, 0));
        let mut group: Vec<Change> = (0..70).map(|i| add(format!("a{i}"))).collect();
        group.push(Change::Done {
            unique: Bytes::from_static(b"a3"),
            function: Bytes::from_static(b"f"),
        });
        group.extend((0..21).map(|i| add(format!("b{i}"))));
        // a5 again (given in the first run's statement) and b2 again (in the same 16-row
        // statement as the first b2): each a new row, in the place it was given.
        group.insert(85, add("a5".into()));
        group.insert(81, add("b2".into()));
        write_group(&mut db, &group).unwrap();
        drop(db);
        let mut expected: Vec<String> = (0..70)
            .filter(|i| *i != 3 && *i != 5)
            .map(|i| format!("a{i}"))
            .collect();
        expected.extend([0, 1, 3, 4, 5, 6, 7, 8, 9, 2, 10, 11, 12, 13].map(|i| format!("b{i}")));
        expected.push("a5".into());
        expected.extend((14..21).map(|i| format!("b{i}")));
        assert_eq!(uniques(&path), expected);
    }

    // A commit is an append to the log: jobs are acknowledged while the table cannot be
    // written, and reach it (in order, deletions too) once it can.
    #[tokio::test]
    async fn the_log_keeps_changes_the_table_cannot_take_yet() {
        for sync in [Sync::Normal, Sync::Full] {
            the_log_keeps_changes_the_table_cannot_take_yet_with(sync).await;
        }
    }

    async fn the_log_keeps_changes_the_table_cannot_take_yet_with(sync: Sync) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let (mut queue, _) = Queue::open(&path, sync).unwrap();
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        for unique in ["a", "b", "c"] {
            let stored = queue.add(job(unique, "f", Priority::Normal, 0));
            queue.committer().commit();
            stored.await.unwrap().unwrap();
        }
        queue.done(Bytes::from_static(b"b"), Bytes::from_static(b"f"));
        queue.committer().commit();
        tokio::time::sleep(APPLY_EVERY * 10).await;
        blocker.execute_batch("COMMIT").unwrap();
        drop(blocker);
        assert!(uniques(&path).is_empty(), "nothing could reach the table");
        let applied = async {
            while uniques(&path) != ["a", "c"] {
                tokio::time::sleep(APPLY_EVERY).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), applied)
            .await
            .expect("the log reaches the table once it can be written");
        queue.close();
        assert!(
            log::existing(&path).unwrap().is_empty(),
            "a clean stop leaves no log"
        );
    }

    // A server that died before applying its log: the next start applies it first.
    #[test]
    fn a_log_left_by_a_crash_is_applied_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        drop(Queue::open(&path, Sync::Normal).unwrap());
        let mut left = Log::start(&path, 7, true).unwrap();
        left.append(&mut vec![
            Change::Add(job("x", "f", Priority::Low, 0)),
            Change::Add(job("y", "f", Priority::High, 5)),
            Change::Done {
                unique: Bytes::from_static(b"x"),
                function: Bytes::from_static(b"f"),
            },
            Change::Add(job("z", "g", Priority::Normal, 0)),
        ])
        .unwrap();
        drop(left);
        // A spare the dead server had made: nothing in it, and not left behind.
        drop(log::make_spare(&path).unwrap());
        let (queue, restored) = Queue::open(&path, Sync::Full).unwrap();
        assert_eq!(
            restored,
            vec![
                job("y", "f", Priority::High, 5),
                job("z", "g", Priority::Normal, 0)
            ]
        );
        // The old log is gone; with no log left, the numbers start again (a log numbered
        // near the largest number this server gives must not make it give a larger one).
        assert_eq!(log::existing(&path).unwrap(), vec![0]);
        drop(queue);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["queue.sqlite"], "a clean stop leaves the file alone");
    }

    #[test]
    fn a_bad_row_is_skipped_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        drop(Queue::open(&path, Sync::Normal).unwrap());
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO {TABLE} VALUES ('u', 'f', 7, x'00', 0); \
             INSERT INTO {TABLE} VALUES ('v', 'f', 1, x'00', 0);"
        ))
        .unwrap();
        drop(db);
        let (queue, restored) = Queue::open(&path, Sync::Normal).unwrap();
        assert_eq!(restored.len(), 1);
        assert_eq!(&restored[0].unique[..], b"v");
        drop(queue);
        let db = rusqlite::Connection::open(&path).unwrap();
        let rows: i64 = db
            .query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "the bad row stays");
    }
}

//! The shared-memory stats table: one memory-mapped anonymous file (a sealed memfd the
//! worker processes inherit) with a header and one slot per worker process. Each worker process writes only its own slot (state, jobs done
//! and failed, when its current job started, lastrun, lasterror, lasterror_msg); the host and
//! the console read every slot. It is Apache's scoreboard, and Gearman::Driver's lastrun /
//! lasterror columns, without a side channel.
//!
//! Readers never block writers, and never see a torn slot, without any lock a dying process
//! could leave held: every field is an atomic, and a sequence counter per slot (odd while a
//! write is in progress) tells a reader whether what it read was stable. That is a seqlock
//! built only from atomics (relaxed stores and loads, ordered by release/acquire fences), as
//! Boehm describes; a seqlock over plain data would be a data race, which Rust counts as
//! undefined behaviour even when the read is thrown away. A reader gives up after a bounded
//! number of attempts, so a writer killed mid-write (its counter left odd) costs a reader a
//! few microseconds, never a hang; the host resets the slot when it reaps that process.
//!
//! One field is written outside the sequence: a job's custom scoreboard state
//! ([`CustomState`], Parallel::Prefork::SpareWorkers' `set_state`), which the job itself sets
//! from whatever thread it runs on. It is a single word, so it cannot tear, and a write of it
//! never touches the sequence counter, so no number of writers can leave the slot unreadable;
//! a reader takes whichever value it finds with the rest. The writes that start and end a job
//! clear it inside the sequence.
//!
//! This module holds the crate's only `unsafe`: turning the mapping's address into
//! references to the header and slots, and handing the memfd's descriptor to a child and
//! taking it over there. Each block says why it is sound.

#![allow(unsafe_code)] // the crate's one unsafe module; every block says why it is sound

use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering, fence};

const MAGIC: u64 = u64::from_le_bytes(*b"GDSTATS1");
const VERSION: u32 = 6;
/// Longest lasterror_msg kept, in bytes; longer messages are cut at a character boundary.
pub const MESSAGE_CAPACITY: usize = 256;
const MESSAGE_WORDS: usize = MESSAGE_CAPACITY / 8;
/// Longest job handle kept (gearmand's are `H:host:N`); a longer one is cut.
pub const HANDLE_CAPACITY: usize = 64;
const HANDLE_WORDS: usize = HANDLE_CAPACITY / 8;
/// How many times a reader retries a slot that changes under it before giving up: a write
/// takes well under a microsecond, so a short spin covers a live writer; a few yields cover
/// one that was preempted mid-write. A dead writer costs a reader no more than that.
const READ_SPINS: usize = 128;
const READ_YIELDS: usize = 4;
/// Upper bounds, in milliseconds, of the job-duration histogram's buckets (Prometheus'
/// defaults, stretched to the minutes that batch jobs take); a last bucket counts the longer.
pub const DURATION_BOUNDS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];
const DURATION_BUCKETS: usize = DURATION_BOUNDS_MS.len() + 1;

/// How long finished jobs took: a count per bucket of [`DURATION_BOUNDS_MS`] (the last for
/// longer ones, not cumulative) and the sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    pub buckets: [u64; DURATION_BUCKETS],
    pub sum_ms: u64,
}

impl Durations {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn add(&mut self, other: &Durations) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_ms += other.sum_ms;
    }

    /// The bucket a job of `ms` milliseconds falls in.
    fn bucket(ms: u64) -> usize {
        DURATION_BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(DURATION_BOUNDS_MS.len())
    }
}

/// Index meaning "no function" in the function fields.
pub const NO_FUNCTION: u32 = u32::MAX;

/// What a worker process is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProcessState {
    /// The slot belongs to nobody.
    #[default]
    Free,
    /// Spawned, not yet registered with the job servers.
    Starting,
    Idle,
    Busy,
    /// Told to stop; finishing its job.
    Stopping,
}

impl ProcessState {
    fn code(self) -> u32 {
        match self {
            ProcessState::Free => 0,
            ProcessState::Starting => 1,
            ProcessState::Idle => 2,
            ProcessState::Busy => 3,
            ProcessState::Stopping => 4,
        }
    }

    fn from_code(code: u32) -> ProcessState {
        match code {
            1 => ProcessState::Starting,
            2 => ProcessState::Idle,
            3 => ProcessState::Busy,
            4 => ProcessState::Stopping,
            _ => ProcessState::Free,
        }
    }

    /// The scoreboard letter: `_` idle, `B` busy, `S` starting, `T` stopping, `.` free.
    /// (A busy process's job may show its own instead: [`CustomState`].)
    pub fn letter(self) -> char {
        match self {
            ProcessState::Free => '.',
            ProcessState::Starting => 'S',
            ProcessState::Idle => '_',
            ProcessState::Busy => 'B',
            ProcessState::Stopping => 'T',
        }
    }
}

/// The letters the scoreboard uses for its own states (and `.` for a free slot): a custom
/// state may not be one of them.
pub const RESERVED_LETTERS: [char; 5] = ['_', 'B', 'S', 'T', '.'];

/// A one-character scoreboard state a job sets for what it is doing (Parallel::Prefork::
/// SpareWorkers' `set_state`): shown in place of `B` while the job runs, cleared when it
/// ends. `T` (stopping) still shows over it. A printable ASCII character other than space
/// and the scoreboard's own letters ([`RESERVED_LETTERS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CustomState(u8);

/// Why a character cannot be a custom state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    #[error("a custom state is one printable ASCII character other than space, not {0:?}")]
    NotPrintable(char),
    #[error(
        "{0:?} is one of the scoreboard's own letters (_ idle, B busy, S starting, T stopping, . free); pick another"
    )]
    Reserved(char),
}

impl CustomState {
    pub fn letter(self) -> char {
        char::from(self.0)
    }

    /// The state a slot stores, if any (0 = none; anything else that is not a valid state,
    /// which only a scribbled-on table holds, reads as none too).
    fn from_code(code: u32) -> Option<CustomState> {
        let byte = u8::try_from(code).ok()?;
        CustomState::try_from(char::from(byte)).ok()
    }
}

impl TryFrom<char> for CustomState {
    type Error = InvalidState;

    fn try_from(letter: char) -> Result<CustomState, InvalidState> {
        if !letter.is_ascii_graphic() {
            return Err(InvalidState::NotPrintable(letter));
        }
        if RESERVED_LETTERS.contains(&letter) {
            return Err(InvalidState::Reserved(letter));
        }
        Ok(CustomState(letter as u8))
    }
}

impl std::fmt::Display for CustomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    slot_size: AtomicU32,
    slots: AtomicU32,
    host_pid: AtomicU32,
}

/// One process's slot. Only atomics, so concurrent access from several processes is never a
/// data race; `seq` makes a multi-field read consistent.
#[repr(C, align(64))]
struct Slot {
    seq: AtomicU64,
    pid: AtomicU32,
    state: AtomicU32,
    /// The function of the job in progress (an index into the pool's function list).
    function: AtomicU32,
    lastrun_function: AtomicU32,
    lasterror_function: AtomicU32,
    message_len: AtomicU32,
    /// 1 once the process has said what it is doing (plugin and command workers from the
    /// start; a program once it writes its first status line).
    reports: AtomicU32,
    /// The running job's [`CustomState`] (its ASCII code; 0 = none). Written outside the
    /// sequence (see the module's doc); it fills what was padding before `jobs_done`.
    custom_state: AtomicU32,
    jobs_done: AtomicU64,
    jobs_failed: AtomicU64,
    /// Milliseconds since the epoch; 0 when not applicable.
    started_ms: AtomicI64,
    job_started_ms: AtomicI64,
    idle_since_ms: AtomicI64,
    /// Seconds since the epoch, as the console shows them.
    lastrun: AtomicI64,
    lasterror: AtomicI64,
    message: [AtomicU64; MESSAGE_WORDS],
    /// Finished jobs by duration (see [`Durations`]).
    durations: [AtomicU64; DURATION_BUCKETS],
    durations_sum_ms: AtomicU64,
    /// The handle of the job in progress (empty when idle, or when the process does not say).
    handle_len: AtomicU64,
    handle: [AtomicU64; HANDLE_WORDS],
    /// When each of the last [`RECENT_RUNS`] functions it ran last finished (a process of a
    /// group serves several; `lastrun` is only the very last): `(function + 1) << 32 |
    /// seconds`, 0 = empty.
    recent: [AtomicU64; RECENT_RUNS],
}

/// Functions whose last run a slot remembers besides its very last job's.
pub const RECENT_RUNS: usize = 8;

fn pack_run(function: u32, seconds: i64) -> u64 {
    (u64::from(function) + 1) << 32 | (seconds.clamp(0, i64::from(u32::MAX)) as u64)
}

fn unpack_run(word: u64) -> Option<(u32, i64)> {
    let function = (word >> 32) as u32;
    (function != 0).then(|| (function - 1, (word & u64::from(u32::MAX)) as i64))
}

const HEADER_SIZE: usize = std::mem::size_of::<Header>();
const SLOT_SIZE: usize = std::mem::size_of::<Slot>();

/// A consistent copy of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSnapshot {
    pub pid: u32,
    pub state: ProcessState,
    pub function: Option<u32>,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    pub started_ms: i64,
    pub job_started_ms: i64,
    pub idle_since_ms: i64,
    pub lastrun: i64,
    pub lastrun_function: Option<u32>,
    pub lasterror: i64,
    pub lasterror_function: Option<u32>,
    pub lasterror_msg: String,
    /// Whether the state is the process's own word; when not, it is only known to be running.
    pub reports: bool,
    pub durations: Durations,
    /// The job server's handle of the job in progress, when known.
    pub handle: String,
    /// What the job in progress says it is doing, when it says.
    pub custom_state: Option<CustomState>,
    /// The last run of each of the functions it ran most recently: (function, seconds).
    pub recent_runs: Vec<(u32, i64)>,
}

impl SlotSnapshot {
    /// When the job of `function` last finished in this process, as far as the slot knows.
    pub fn lastrun_of(&self, function: u32) -> i64 {
        let last = match self.lastrun_function == Some(function) {
            true => self.lastrun,
            false => 0,
        };
        self.recent_runs
            .iter()
            .filter(|(f, _)| *f == function)
            .map(|(_, at)| *at)
            .fold(last, i64::max)
    }
}

impl SlotSnapshot {
    /// Whether the process is running a job: it may be stopping at the same time (the state
    /// says `T` then), and then it finishes the job first.
    pub fn holds_job(&self) -> bool {
        self.function.is_some()
    }

    /// Whether the process has run a job, whatever its outcome.
    pub fn has_served(&self) -> bool {
        self.jobs_done > 0 || self.jobs_failed > 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot create the stats table: {0}")]
    Create(io::Error),
    #[error("cannot open the stats table {what}: {source}")]
    Open { what: String, source: io::Error },
    #[error("cannot map the stats table {what}: {source}")]
    Map { what: String, source: io::Error },
    #[error("{what} is not a geardriver stats table of this version")]
    Foreign { what: String },
    #[error("stats slot {index} is out of range (the table has {slots})")]
    NoSuchSlot { index: usize, slots: usize },
}

/// A mapping of the stats table.
pub struct StatsTable {
    map: MmapRaw,
    slots: usize,
    file: File,
}

impl StatsTable {
    /// Creates the table sized for `slots` processes in an anonymous memory file (a memfd):
    /// it has no name in any directory, so nobody can pre-create it, find it left behind by
    /// a killed host, or delete it; it is sealed against shrinking and growing, so nobody
    /// who gets hold of it can truncate it under the mappings (which would kill every
    /// process that touches the lost pages with SIGBUS). It goes when the last process
    /// holding it exits. Worker processes inherit it ([`StatsTable::share_with`]).
    pub fn create(slots: usize) -> Result<StatsTable, StatsError> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let len = HEADER_SIZE + slots * SLOT_SIZE;
        let fd = memfd_create(
            c"geardriver-stats",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| StatsError::Create(e.into()))?;
        let file = File::from(fd);
        // Allocated now, not on first write: a write through the mapping to a page the
        // system cannot provide would kill the writer with SIGBUS. Short memory is an error
        // here, at start, instead.
        file.set_len(len as u64).map_err(StatsError::Create)?;
        match nix::fcntl::posix_fallocate(&file, 0, len as i64) {
            Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) => {}
            Err(errno) => return Err(StatsError::Create(errno.into())),
        }
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| StatsError::Create(e.into()))?;
        let table = Self::map(file, "memfd".into(), slots)?;
        let header = table.header();
        header.version.store(VERSION, Ordering::Relaxed);
        header.slot_size.store(SLOT_SIZE as u32, Ordering::Relaxed);
        header.slots.store(slots as u32, Ordering::Relaxed);
        header.host_pid.store(std::process::id(), Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(table)
    }

    /// Maps a host's table by a path to it: `/proc/HOST_PID/fd/N` (for tools and tests;
    /// worker processes use [`StatsTable::attach_inherited`]).
    pub fn attach(path: &Path) -> Result<StatsTable, StatsError> {
        let what = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| StatsError::Open {
                what: what.clone(),
                source,
            })?;
        Self::attach_file(file, what, true)
    }

    /// Maps the table a worker process inherited from its host as descriptor `fd`, and
    /// marks that descriptor close-on-exec so the commands the worker runs do not get it.
    /// Call it once per descriptor.
    pub fn attach_inherited(fd: i32) -> Result<StatsTable, StatsError> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
        let what = format!("descriptor {fd}");
        let open = |source| StatsError::Open {
            what: what.clone(),
            source,
        };
        if fd < 3 {
            return Err(open(io::Error::from(io::ErrorKind::InvalidInput)));
        }
        // SAFETY: borrowing a raw descriptor is sound while it stays open for the borrow;
        // `fcntl(F_GETFD)` only asks whether it is open, and fails harmlessly if not.
        fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD)
            .map_err(|e| open(e.into()))?;
        // SAFETY: the descriptor is open (checked just above) and was inherited across exec:
        // no object in this process opened it, so nothing else owns or will close it. Callers
        // take it once (the worker's start), so it is owned exactly once from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| open(e.into()))?;
        // The host handed it over: its size is sealed and says how many slots there are. The
        // header is not checked: any process of the user can scribble on it, and that must
        // not stop every new worker from starting.
        Self::attach_file(File::from(fd), what, false)
    }

    fn attach_file(file: File, what: String, check_header: bool) -> Result<StatsTable, StatsError> {
        let len = file
            .metadata()
            .map_err(|source| StatsError::Open {
                what: what.clone(),
                source,
            })?
            .len() as usize;
        if len < HEADER_SIZE || (len - HEADER_SIZE) % SLOT_SIZE != 0 {
            return Err(StatsError::Foreign { what });
        }
        let slots = (len - HEADER_SIZE) / SLOT_SIZE;
        let table = Self::map(file, what.clone(), slots)?;
        let header = table.header();
        if check_header
            && (header.magic.load(Ordering::Acquire) != MAGIC
                || header.version.load(Ordering::Relaxed) != VERSION
                || header.slot_size.load(Ordering::Relaxed) as usize != SLOT_SIZE
                || header.slots.load(Ordering::Relaxed) as usize != slots)
        {
            return Err(StatsError::Foreign { what });
        }
        Ok(table)
    }

    fn map(file: File, what: String, slots: usize) -> Result<StatsTable, StatsError> {
        let len = HEADER_SIZE + slots * SLOT_SIZE;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|source| StatsError::Map { what, source })?;
        Ok(StatsTable { map, slots, file })
    }

    /// Has a child started by `command` inherit the table, and returns the descriptor
    /// number it will find it at (the same as here).
    pub fn share_with(&self, command: &mut tokio::process::Command) -> i32 {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        use std::os::fd::{AsRawFd, BorrowedFd};
        let fd = self.file.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes one fcntl system call (no allocation,
        // no lock). The descriptor is open in the child, which got a copy of every
        // descriptor the parent had, and `self` (which owns it) is alive in the parent while
        // `command` spawns.
        unsafe {
            command.pre_exec(move || {
                fcntl(
                    BorrowedFd::borrow_raw(fd),
                    FcntlArg::F_SETFD(FdFlag::empty()),
                )
                .map(drop)
                .map_err(io::Error::from)
            });
        }
        fd
    }

    /// A new descriptor for the table, for [`StatsTable::attach_inherited`] in this same
    /// process (a worker served in-process, as the tests do). It stays open until attached.
    pub fn share_in_process(&self) -> Result<i32, StatsError> {
        use std::os::fd::IntoRawFd;
        let copy = self.file.try_clone().map_err(StatsError::Create)?;
        Ok(std::os::fd::OwnedFd::from(copy).into_raw_fd())
    }

    /// Where another process of the same user finds the table: `/proc/PID/fd/N`.
    pub fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }

    pub fn capacity(&self) -> usize {
        self.slots
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes long (checked when it was made),
        // starts on a page boundary (so Header's 64-byte alignment holds), and stays mapped
        // as long as `self` lives, which bounds the reference. Every field is an atomic, for
        // which any bit pattern (including the zeroes of a fresh file) is valid, and atomics
        // may be shared and mutated through `&` by this and other processes at once.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn slot(&self, index: usize) -> &Slot {
        assert!(index < self.slots, "slot index checked by callers");
        // SAFETY: index < slots, and the mapping holds HEADER_SIZE + slots * SLOT_SIZE bytes,
        // so the slot lies inside it. HEADER_SIZE and SLOT_SIZE are multiples of 64 (both
        // types are repr(C, align(64))) on a page-aligned mapping, so the slot is aligned.
        // All fields are atomics (valid for any bits, shareable across processes through
        // `&`), and the reference cannot outlive `self`, which keeps the mapping alive.
        unsafe { &*(self.map.as_ptr().add(HEADER_SIZE + index * SLOT_SIZE) as *const Slot) }
    }

    fn check(&self, index: usize) -> Result<(), StatsError> {
        if index < self.slots {
            Ok(())
        } else {
            Err(StatsError::NoSuchSlot {
                index,
                slots: self.slots,
            })
        }
    }

    /// The writer for one slot. Exactly one process may write a slot at a time: the host
    /// while no process owns it, then the process it was given to.
    pub fn writer(&self, index: usize) -> Result<SlotWriter<'_>, StatsError> {
        self.check(index)?;
        Ok(SlotWriter {
            slot: self.slot(index),
        })
    }

    /// A consistent copy of a slot, or `None` when it kept changing under the reader (a
    /// writer died mid-write, or writes too fast to catch).
    pub fn read(&self, index: usize) -> Option<SlotSnapshot> {
        if index >= self.slots {
            return None;
        }
        let slot = self.slot(index);
        for attempt in 0..READ_SPINS + READ_YIELDS {
            let before = slot.seq.load(Ordering::Acquire);
            if before % 2 == 0 {
                let (mut snapshot, message, handle, recent) = read_fields(slot);
                fence(Ordering::Acquire);
                if slot.seq.load(Ordering::Relaxed) == before {
                    // Decoded (and allocated) only once the copy is known to be whole.
                    snapshot.lasterror_msg = message.text();
                    snapshot.handle = handle.text();
                    snapshot.recent_runs = recent.into_iter().filter_map(unpack_run).collect();
                    return Some(snapshot);
                }
            }
            if attempt < READ_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        None
    }
}

fn function_index(raw: u32) -> Option<u32> {
    (raw != NO_FUNCTION).then_some(raw)
}

/// Text copied out of a slot, not yet decoded.
struct Copied<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Copied<N> {
    /// Copies the first `len` bytes kept in `words` (only the words holding them).
    fn from(words: &[AtomicU64], len: u64) -> Copied<N> {
        let len = (len as usize).min(N).min(words.len() * 8);
        let mut bytes = [0u8; N];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words).take(len.div_ceil(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        Copied { bytes, len }
    }

    /// A torn copy never gets here, but decoding must not fail whatever the bytes.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len]).into_owned()
    }
}

/// The slot's fields, and its two texts and recent runs still raw.
fn read_fields(
    slot: &Slot,
) -> (
    SlotSnapshot,
    Copied<MESSAGE_CAPACITY>,
    Copied<HANDLE_CAPACITY>,
    [u64; RECENT_RUNS],
) {
    let r = Ordering::Relaxed;
    let message = Copied::from(&slot.message, u64::from(slot.message_len.load(r)));
    let handle = Copied::from(&slot.handle, slot.handle_len.load(r));
    let snapshot = SlotSnapshot {
        pid: slot.pid.load(r),
        state: ProcessState::from_code(slot.state.load(r)),
        function: function_index(slot.function.load(r)),
        jobs_done: slot.jobs_done.load(r),
        jobs_failed: slot.jobs_failed.load(r),
        started_ms: slot.started_ms.load(r),
        job_started_ms: slot.job_started_ms.load(r),
        idle_since_ms: slot.idle_since_ms.load(r),
        lastrun: slot.lastrun.load(r),
        lastrun_function: function_index(slot.lastrun_function.load(r)),
        lasterror: slot.lasterror.load(r),
        lasterror_function: function_index(slot.lasterror_function.load(r)),
        lasterror_msg: String::new(),
        reports: slot.reports.load(r) != 0,
        durations: Durations {
            buckets: std::array::from_fn(|i| slot.durations[i].load(r)),
            sum_ms: slot.durations_sum_ms.load(r),
        },
        handle: String::new(),
        custom_state: CustomState::from_code(slot.custom_state.load(r)),
        recent_runs: Vec::new(),
    };
    let recent: [u64; RECENT_RUNS] = std::array::from_fn(|i| slot.recent[i].load(r));
    (snapshot, message, handle, recent)
}

/// Stores `text` (cut to fit at a character boundary) in `words` (at most
/// [`HANDLE_CAPACITY`] bytes); returns its length.
fn store_text(words: &[AtomicU64], text: &str) -> u64 {
    let mut end = text.len().min(words.len() * 8);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // On the job path: no allocation, and only the words the text needs (readers read no
    // further than its length).
    let mut bytes = [0u8; HANDLE_CAPACITY];
    let end = end.min(HANDLE_CAPACITY);
    bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
    for (word, chunk) in words
        .iter()
        .zip(bytes.chunks_exact(8))
        .take(end.div_ceil(8))
    {
        word.store(
            u64::from_le_bytes(chunk.try_into().expect("chunks of 8")),
            Ordering::Relaxed,
        );
    }
    end as u64
}

/// Writes one slot. Every method but [`SlotWriter::set_custom_state`] (one word, see the
/// module's doc) is one seqlock write: readers see all of it or none.
pub struct SlotWriter<'a> {
    slot: &'a Slot,
}

impl SlotWriter<'_> {
    fn write(&self, update: impl FnOnce(&Slot)) {
        let slot = self.slot;
        let seq = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        update(slot);
        slot.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Gives the slot to a new process (the host, before the process starts).
    pub fn assign(&self, pid: u32, now_ms: i64) {
        self.write(|s| {
            let r = Ordering::Relaxed;
            s.pid.store(pid, r);
            s.state.store(ProcessState::Starting.code(), r);
            for field in [&s.function, &s.lastrun_function, &s.lasterror_function] {
                field.store(NO_FUNCTION, r);
            }
            s.message_len.store(0, r);
            s.reports.store(0, r);
            s.custom_state.store(0, r);
            s.jobs_done.store(0, r);
            s.jobs_failed.store(0, r);
            s.started_ms.store(now_ms, r);
            s.job_started_ms.store(0, r);
            s.idle_since_ms.store(now_ms, r);
            s.lastrun.store(0, r);
            s.lasterror.store(0, r);
            for bucket in &s.durations {
                bucket.store(0, r);
            }
            s.durations_sum_ms.store(0, r);
            for word in &s.recent {
                word.store(0, r);
            }
        });
    }

    /// Frees the slot (the host, after reaping its process). Resets the sequence counter too,
    /// which a process killed mid-write may have left odd.
    pub fn clear(&self) {
        let slot = self.slot;
        let seq = slot.seq.load(Ordering::Relaxed);
        let even = seq.wrapping_add(seq % 2);
        slot.seq.store(even.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        slot.pid.store(0, Ordering::Relaxed);
        slot.state
            .store(ProcessState::Free.code(), Ordering::Relaxed);
        slot.function.store(NO_FUNCTION, Ordering::Relaxed);
        slot.job_started_ms.store(0, Ordering::Relaxed);
        slot.custom_state.store(0, Ordering::Relaxed);
        slot.seq.store(even.wrapping_add(2), Ordering::Release);
    }

    pub fn set_state(&self, state: ProcessState, now_ms: i64) {
        self.write(|s| {
            s.reports.store(1, Ordering::Relaxed);
            s.state.store(state.code(), Ordering::Relaxed);
            if state == ProcessState::Idle {
                s.idle_since_ms.store(now_ms, Ordering::Relaxed);
            }
        });
    }

    /// The process runs but does not (yet) say what it is doing: shown idle, with
    /// `reports` false so that the host knows it is a guess.
    pub fn running_unreported(&self, now_ms: i64) {
        self.write(|s| {
            s.state.store(ProcessState::Idle.code(), Ordering::Relaxed);
            s.idle_since_ms.store(now_ms, Ordering::Relaxed);
        });
    }

    /// A job of `function` (an index into the process's function list) started; `handle` is
    /// its job handle, when known (empty otherwise).
    pub fn job_started(&self, function: u32, now_ms: i64, handle: &str) {
        self.write(|s| {
            let len = store_text(&s.handle, handle);
            s.handle_len.store(len, Ordering::Relaxed);
            s.reports.store(1, Ordering::Relaxed);
            s.custom_state.store(0, Ordering::Relaxed);
            s.state.store(ProcessState::Busy.code(), Ordering::Relaxed);
            s.function.store(function, Ordering::Relaxed);
            s.job_started_ms.store(now_ms, Ordering::Relaxed);
        });
    }

    /// The job in progress ended; `error` is its message when it failed.
    pub fn job_finished(&self, now_ms: i64, error: Option<&str>) {
        self.write(|s| {
            let r = Ordering::Relaxed;
            let function = s.function.load(r);
            let now_s = now_ms.div_euclid(1000);
            let started = s.job_started_ms.load(r);
            if started > 0 {
                let took = now_ms.saturating_sub(started).max(0) as u64;
                let bucket = &s.durations[Durations::bucket(took)];
                bucket.store(bucket.load(r) + 1, r);
                s.durations_sum_ms
                    .store(s.durations_sum_ms.load(r).saturating_add(took), r);
            }
            s.reports.store(1, r);
            s.custom_state.store(0, r);
            s.state.store(ProcessState::Idle.code(), r);
            s.function.store(NO_FUNCTION, r);
            s.job_started_ms.store(0, r);
            s.handle_len.store(0, r);
            s.idle_since_ms.store(now_ms, r);
            s.lastrun.store(now_s, r);
            s.lastrun_function.store(function, r);
            if function != NO_FUNCTION {
                // Its entry, else the oldest (an empty one is oldest of all).
                let mine = s
                    .recent
                    .iter()
                    .position(|w| unpack_run(w.load(r)).is_some_and(|(f, _)| f == function));
                let oldest = || {
                    (0..RECENT_RUNS)
                        .min_by_key(|&i| unpack_run(s.recent[i].load(r)).map_or(-1, |(_, at)| at))
                        .unwrap_or(0)
                };
                s.recent[mine.unwrap_or_else(oldest)].store(pack_run(function, now_s), r);
            }
            match error {
                None => {
                    s.jobs_done.store(s.jobs_done.load(r) + 1, r);
                }
                Some(message) => {
                    s.jobs_failed.store(s.jobs_failed.load(r) + 1, r);
                    s.lasterror.store(now_s, r);
                    s.lasterror_function.store(function, r);
                    store_message(s, message);
                }
            }
        });
    }

    /// Sets (or with `None` clears) the custom state of the job in progress. One atomic
    /// store outside the sequence, so the job may call it from any of its threads (see the
    /// module's doc). Ignored when the slot holds no job: a state belongs to a job, and the
    /// writes that start and end one clear it. Returns whether it was stored.
    pub fn set_custom_state(&self, state: Option<CustomState>) -> bool {
        let s = self.slot;
        if s.function.load(Ordering::Relaxed) == NO_FUNCTION {
            return false;
        }
        s.custom_state
            .store(state.map_or(0, |c| u32::from(c.0)), Ordering::Relaxed);
        true
    }

    /// Records an error that is not a job's (an overrun the host noticed, say).
    pub fn record_error(&self, function: Option<u32>, now_ms: i64, message: &str) {
        self.write(|s| {
            s.lasterror
                .store(now_ms.div_euclid(1000), Ordering::Relaxed);
            s.lasterror_function
                .store(function.unwrap_or(NO_FUNCTION), Ordering::Relaxed);
            store_message(s, message);
        });
    }
}

fn store_message(slot: &Slot, message: &str) {
    let mut end = message.len().min(MESSAGE_CAPACITY);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = [0u8; MESSAGE_CAPACITY];
    bytes[..end].copy_from_slice(&message.as_bytes()[..end]);
    for (word, chunk) in slot.message.iter().zip(bytes.chunks_exact(8)) {
        word.store(
            u64::from_le_bytes(chunk.try_into().expect("chunks of 8")),
            Ordering::Relaxed,
        );
    }
    slot.message_len.store(end as u32, Ordering::Relaxed);
}

/// Milliseconds since the epoch, as the table stores times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_messages_are_bounded() {
        let table = StatsTable::create(4).unwrap();
        let path = table.proc_path();
        let w = table.writer(2).unwrap();
        w.assign(1234, 5_000);
        let s = table.read(2).unwrap();
        assert_eq!(
            (s.pid, s.state, s.function),
            (1234, ProcessState::Starting, None)
        );
        w.job_started(1, 6_000, "H:host:7");
        assert_eq!(table.read(2).unwrap().handle, "H:host:7");
        assert_eq!(table.read(2).unwrap().state, ProcessState::Busy);
        let long = "é".repeat(200);
        w.job_finished(7_500, Some(&long));
        let s = table.read(2).unwrap();
        assert_eq!(s.state, ProcessState::Idle);
        assert_eq!((s.lastrun, s.lasterror, s.jobs_failed), (7, 7, 1));
        assert_eq!(s.lasterror_function, Some(1));
        assert_eq!(
            s.lasterror_msg,
            "é".repeat(128),
            "cut at a character boundary"
        );
        w.job_started(0, 8_000, &"h".repeat(100));
        assert_eq!(
            table.read(2).unwrap().handle,
            "h".repeat(HANDLE_CAPACITY),
            "cut"
        );
        w.job_finished(9_000, None);
        let s = table.read(2).unwrap();
        assert_eq!(s.durations.count(), 2, "both jobs are timed");
        assert_eq!(s.durations.sum_ms, 2_500);
        assert_eq!(s.durations.buckets[Durations::bucket(1_500)], 1);
        assert_eq!(s.durations.buckets[7], 1, "1 s falls in the 1 s bucket");
        assert_eq!(
            (s.jobs_done, s.lastrun, s.lastrun_function),
            (1, 9, Some(0))
        );
        assert_eq!(s.lasterror_msg.len(), 256, "the last error stays");
        // Another process attaching sees the same slot.
        let other = StatsTable::attach(&path).unwrap();
        assert_eq!(other.read(2).unwrap(), s);
        assert!(other.writer(4).is_err());
        drop(other);
        // A writer that died mid-write leaves the counter odd: reads give up, clear repairs.
        table.slot(2).seq.fetch_add(1, Ordering::Relaxed);
        assert_eq!(table.read(2), None);
        w.clear();
        assert_eq!(table.read(2).unwrap().state, ProcessState::Free);
        // Nobody can shrink or grow it under the mappings.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        assert!(file.set_len(0).is_err(), "the table cannot be truncated");
        assert!(file.set_len(1 << 30).is_err(), "nor grown");
    }

    #[test]
    fn a_custom_state_is_one_letter_of_a_running_job() {
        let state = |c: char| CustomState::try_from(c);
        assert_eq!(state('C').unwrap().letter(), 'C');
        assert_eq!(state('~').unwrap().to_string(), "~");
        for reserved in RESERVED_LETTERS {
            assert_eq!(state(reserved), Err(InvalidState::Reserved(reserved)));
        }
        for bad in [' ', '\n', '\0', '\u{7f}', 'é', '€'] {
            assert_eq!(state(bad), Err(InvalidState::NotPrintable(bad)));
        }
        assert_eq!(
            InvalidState::Reserved('B').to_string(),
            "'B' is one of the scoreboard's own letters (_ idle, B busy, S starting, T stopping, . free); pick another"
        );

        let table = StatsTable::create(1).unwrap();
        let w = table.writer(0).unwrap();
        w.assign(9, 1_000);
        w.set_state(ProcessState::Idle, 1_000);
        let c = state('C').ok();
        assert!(!w.set_custom_state(c), "no job, no state");
        assert_eq!(table.read(0).unwrap().custom_state, None);
        w.job_started(0, 2_000, "H:x:1");
        assert!(w.set_custom_state(c));
        assert_eq!(table.read(0).unwrap().custom_state, c);
        w.set_state(ProcessState::Stopping, 2_500);
        assert_eq!(
            table.read(0).unwrap().custom_state,
            c,
            "kept while it finishes"
        );
        w.set_custom_state(None);
        assert_eq!(table.read(0).unwrap().custom_state, None);
        w.set_custom_state(c);
        w.job_finished(3_000, None);
        assert_eq!(
            table.read(0).unwrap().custom_state,
            None,
            "the job's end clears it"
        );
        w.job_started(0, 4_000, "");
        assert_eq!(table.read(0).unwrap().custom_state, None);
        // Whatever a scribbler leaves there reads as no state.
        table
            .slot(0)
            .custom_state
            .store(u32::from(b'B'), Ordering::Relaxed);
        assert_eq!(table.read(0).unwrap().custom_state, None);
        table
            .slot(0)
            .custom_state
            .store(0x1_0043, Ordering::Relaxed);
        assert_eq!(table.read(0).unwrap().custom_state, None);
        // It took what was padding: the slot is no bigger than with the recent runs.
        assert_eq!(SLOT_SIZE, 640);
    }

    #[test]
    fn a_slot_remembers_the_last_run_of_its_recent_functions() {
        let table = StatsTable::create(1).unwrap();
        let w = table.writer(0).unwrap();
        w.assign(7, 0);
        // Functions 0..9, one job each, a second apart: the oldest two are forgotten.
        for f in 0..10u32 {
            let at = i64::from(f + 1) * 1000;
            w.job_started(f, at, "");
            w.job_finished(at + 1, None);
        }
        let s = table.read(0).unwrap();
        assert_eq!(s.recent_runs.len(), RECENT_RUNS);
        assert_eq!((s.lastrun_of(0), s.lastrun_of(1)), (0, 0));
        for f in 2..10u32 {
            assert_eq!(s.lastrun_of(f), i64::from(f + 1), "function {f}");
        }
        // A function run again keeps its one entry.
        w.job_started(5, 20_000, "");
        w.job_finished(20_001, None);
        let s = table.read(0).unwrap();
        assert_eq!(s.lastrun_of(5), 20);
        assert_eq!(s.lastrun_of(2), 3);
        // A new process in the slot starts with none.
        w.assign(8, 30_000);
        assert!(table.read(0).unwrap().recent_runs.is_empty());
    }
}

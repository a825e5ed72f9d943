//! The recent output of every worker process (RapidApp::BgTask::TaskPool's
//! `maxReadBufSize`): the last `[driver] output_buffer` lines it wrote to stdout and stderr
//! together, each with its stream and the time it was read, kept a while after the process
//! exits, because the output an operator most wants is that of a process that just crashed.
//! The console's `output PID` and `GET /api/processes/PID/output` read it.
//!
//! Memory is bounded whatever the processes write: lines are already cut at 4096 bytes where
//! they are read; a process keeps at most `output_buffer` lines and at most
//! [`BYTES_PER_PROCESS`] bytes of them (each line counted with [`LINE_OVERHEAD`] for its
//! bookkeeping), its oldest going first; of processes that exited, the last
//! [`EXITED_PER_POOL`] of each pool are kept, and [`EXITED_MAX`] in all. A kept line takes
//! its text, a 40-byte entry in the queue and the allocator's rounding, which the overhead
//! covers; a queue also has spare room, at most 1024 entries' worth (40 KiB). So the whole is
//! under (live processes + [`EXITED_MAX`]) × ([`BYTES_PER_PROCESS`] + 40 KiB), which the
//! README rounds to 110 KiB a process.
//!
//! The readers of a process's pipes write here and the console and the HTTP API read, all
//! tasks of the host's runtime: one mutex over the whole, held only to push or copy lines
//! (never across an `.await`), is the simple honest tool.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// The most lines `output_buffer` may ask for per process.
pub const MAX_LINES: usize = 1000;
/// The most bytes of output one process keeps (lines and their overhead).
pub const BYTES_PER_PROCESS: usize = 64 * 1024;
/// What a kept line costs beyond its text (its time, stream, the string's and the queue's
/// own fields), counted against [`BYTES_PER_PROCESS`] so that many empty lines are bounded
/// too.
pub const LINE_OVERHEAD: usize = 64;
/// Processes that exited whose output is kept, per pool and in all.
pub const EXITED_PER_POOL: usize = 4;
pub const EXITED_MAX: usize = 64;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// As the log and the console write it.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "STDOUT",
            Stream::Stderr => "STDERR",
        }
    }
}

/// One line a process wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    /// When the host read it, milliseconds since the epoch.
    pub time_ms: i64,
    pub stream: Stream,
    /// Without its line end; decoded lossily.
    pub text: String,
    /// Longer than the host reads of a line: the rest was dropped.
    pub cut: bool,
}

impl OutputLine {
    fn cost(&self) -> usize {
        self.text.len() + LINE_OVERHEAD
    }
}

/// What is kept of one process's output, as a reader gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOutput {
    pub pid: u32,
    /// The pool (group or job) it served.
    pub pool: String,
    pub started_ms: i64,
    /// When it exited and how (`1`, `137 (killed by SIGKILL)`), once it has.
    pub exited: Option<(i64, String)>,
    /// The lines asked for, oldest first.
    pub lines: Vec<OutputLine>,
    /// Lines it wrote before these that are no longer kept (not counting those left out by
    /// the reader's own limit).
    pub dropped: u64,
}

/// Every process's buffer. Cloning gives another handle on the same buffers.
#[derive(Clone, Default)]
pub struct OutputBuffers {
    inner: Arc<Mutex<Buffers>>,
}

#[derive(Default)]
struct Buffers {
    processes: BTreeMap<u32, Buffer>,
    /// Processes that exited, oldest first: (pid, the buffer's id), so that an entry for a
    /// pid reused since is told apart.
    exited: VecDeque<(u32, u64)>,
    next_id: u64,
}

struct Buffer {
    id: u64,
    pool: String,
    started_ms: i64,
    exited: Option<(i64, String)>,
    max_lines: usize,
    lines: VecDeque<OutputLine>,
    bytes: usize,
    dropped: u64,
}

impl OutputBuffers {
    fn lock(&self) -> MutexGuard<'_, Buffers> {
        // A panic while holding it leaves whole lines at worst: go on with them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the buffer of a process that just started, keeping up to `max_lines` lines
    /// (at most [`MAX_LINES`]); `None` when that is 0 (buffering off). A buffer left by an
    /// earlier process with the same pid goes.
    pub fn start(
        &self,
        pid: u32,
        pool: &str,
        max_lines: usize,
        now_ms: i64,
    ) -> Option<OutputWriter> {
        if max_lines == 0 {
            return None;
        }
        let mut buffers = self.lock();
        let id = buffers.next_id;
        buffers.next_id += 1;
        buffers.processes.insert(
            pid,
            Buffer {
                id,
                pool: pool.to_string(),
                started_ms: now_ms,
                exited: None,
                max_lines: max_lines.min(MAX_LINES),
                lines: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            },
        );
        // The exit of an earlier process with this pid is no longer anyone's.
        buffers.exited.retain(|&(exited, _)| exited != pid);
        Some(OutputWriter {
            buffers: self.clone(),
            pid,
            id,
        })
    }

    /// Marks a process as exited with `how`; the oldest exited buffers past the caps go.
    pub fn exited(&self, pid: u32, how: &str, now_ms: i64) {
        let mut buffers = self.lock();
        let Some(buffer) = buffers.processes.get_mut(&pid) else {
            return;
        };
        if buffer.exited.is_some() {
            return;
        }
        buffer.exited = Some((now_ms, how.to_string()));
        let (id, pool) = (buffer.id, buffer.pool.clone());
        buffers.exited.push_back((pid, id));
        buffers.forget_exited(|b| b.pool == pool, EXITED_PER_POOL);
        buffers.forget_exited(|_| true, EXITED_MAX);
    }

    /// The last `last` lines kept for `pid` (all of them when `None`), or `None` when
    /// nothing is kept for it.
    pub fn read(&self, pid: u32, last: Option<usize>) -> Option<ProcessOutput> {
        let buffers = self.lock();
        let buffer = buffers.processes.get(&pid)?;
        let skip = last.map_or(0, |n| buffer.lines.len().saturating_sub(n));
        Some(ProcessOutput {
            pid,
            pool: buffer.pool.clone(),
            started_ms: buffer.started_ms,
            exited: buffer.exited.clone(),
            lines: buffer.lines.iter().skip(skip).cloned().collect(),
            dropped: buffer.dropped,
        })
    }

    /// Bytes held in all (lines and their overhead), for tests and the curious.
    pub fn bytes(&self) -> usize {
        self.lock().processes.values().map(|b| b.bytes).sum()
    }
}

impl Buffers {
    /// Drops the oldest exited buffers that `matches` until at most `keep` of them remain.
    fn forget_exited(&mut self, matches: impl Fn(&Buffer) -> bool, keep: usize) {
        let held: Vec<(u32, u64)> = self
            .exited
            .iter()
            .copied()
            .filter(|(pid, id)| {
                self.processes
                    .get(pid)
                    .is_some_and(|b| b.id == *id && matches(b))
            })
            .collect();
        let surplus = held.len().saturating_sub(keep);
        for (pid, id) in held.into_iter().take(surplus) {
            self.processes.remove(&pid);
            self.exited.retain(|&entry| entry != (pid, id));
        }
        // Entries whose pid a newer process took are no longer anyone's.
        let processes = &self.processes;
        self.exited
            .retain(|(pid, id)| processes.get(pid).is_some_and(|b| b.id == *id));
    }
}

/// Where the readers of one process's pipes put its lines.
#[derive(Clone)]
pub struct OutputWriter {
    buffers: OutputBuffers,
    pid: u32,
    id: u64,
}

impl OutputWriter {
    /// Adds a line; the oldest go while the buffer is over its line or byte bound. Dropped
    /// when the process's buffer is gone (it exited long enough ago).
    pub fn push(&self, line: OutputLine) {
        let mut buffers = self.buffers.lock();
        let Some(buffer) = buffers.processes.get_mut(&self.pid) else {
            return;
        };
        if buffer.id != self.id {
            return;
        }
        buffer.bytes += line.cost();
        buffer.lines.push_back(line);
        while buffer.lines.len() > buffer.max_lines
            || (buffer.bytes > BYTES_PER_PROCESS && buffer.lines.len() > 1)
        {
            let Some(old) = buffer.lines.pop_front() else {
                break;
            };
            buffer.bytes -= old.cost();
            buffer.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> OutputLine {
        OutputLine {
            time_ms: 1_000,
            stream: Stream::Stdout,
            text: text.to_string(),
            cut: false,
        }
    }

    fn texts(output: &ProcessOutput) -> Vec<&str> {
        output.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn a_buffer_keeps_the_last_lines_within_its_bounds() {
        // The bound the module's doc (and the README) gives counts on this.
        assert!(std::mem::size_of::<OutputLine>() <= 40);
        let buffers = OutputBuffers::default();
        assert!(buffers.start(1, "a", 0, 0).is_none(), "0 turns it off");
        assert_eq!(buffers.read(1, None), None);
        let writer = buffers.start(7, "a", 3, 500).unwrap();
        for i in 1..=5 {
            writer.push(line(&format!("line {i}")));
        }
        let all = buffers.read(7, None).unwrap();
        assert_eq!(texts(&all), ["line 3", "line 4", "line 5"]);
        assert_eq!((all.dropped, all.started_ms, all.exited), (2, 500, None));
        assert_eq!(
            texts(&buffers.read(7, Some(2)).unwrap()),
            ["line 4", "line 5"]
        );
        assert_eq!(buffers.read(7, Some(100)).unwrap().lines.len(), 3);
        assert!(buffers.read(7, Some(0)).unwrap().lines.is_empty());
        assert_eq!(buffers.read(8, None), None);

        // Long lines are bounded by bytes, whatever the line count allows.
        let writer = buffers.start(9, "a", MAX_LINES, 0).unwrap();
        let long = "x".repeat(4096);
        for _ in 0..100 {
            writer.push(line(&long));
        }
        let kept = buffers.read(9, None).unwrap();
        assert_eq!(kept.lines.len(), BYTES_PER_PROCESS / (4096 + LINE_OVERHEAD));
        assert_eq!(kept.dropped as usize, 100 - kept.lines.len());
        assert_eq!(
            buffers.bytes(),
            3 * (6 + LINE_OVERHEAD) + kept.lines.len() * (4096 + LINE_OVERHEAD)
        );
        // Asking for more lines than the maximum gets the maximum.
        let writer = buffers.start(10, "a", usize::MAX, 0).unwrap();
        for _ in 0..MAX_LINES + 10 {
            writer.push(line(""));
        }
        assert_eq!(buffers.read(10, None).unwrap().lines.len(), MAX_LINES);
    }

    #[test]
    fn exited_processes_are_kept_a_while_and_bounded() {
        let buffers = OutputBuffers::default();
        let first = buffers.start(100, "crashy", 10, 0).unwrap();
        first.push(line("last words"));
        buffers.exited(100, "1", 2_000);
        // Lines still in the pipe when the exit is reaped still arrive.
        first.push(line("very last words"));
        let kept = buffers.read(100, None).unwrap();
        assert_eq!(kept.exited, Some((2_000, "1".to_string())));
        assert_eq!(texts(&kept), ["last words", "very last words"]);

        // Per pool, the last EXITED_PER_POOL exited ones stay.
        for pid in 101..=(100 + EXITED_PER_POOL as u32) {
            buffers.start(pid, "crashy", 10, 0).unwrap();
            buffers.exited(pid, "1", 3_000);
        }
        assert_eq!(buffers.read(100, None), None, "the oldest went");
        first.push(line("into nothing"));
        assert!(buffers.read(101, None).is_some());
        // Another pool's are not pushed out by this one's.
        buffers.start(1, "calm", 10, 0).unwrap();
        buffers.exited(1, "0", 3_000);
        for pid in 200..210 {
            buffers.start(pid, "crashy", 10, 0).unwrap();
            buffers.exited(pid, "1", 4_000);
        }
        assert!(buffers.read(1, None).is_some());
        // And EXITED_MAX in all.
        for pool in 0..EXITED_MAX {
            buffers.start(1_000 + pool as u32, &format!("p{pool}"), 10, 0);
            buffers.exited(1_000 + pool as u32, "0", 5_000);
        }
        assert_eq!(buffers.read(1, None), None);
        assert_eq!(buffers.lock().exited.len(), EXITED_MAX);
        assert_eq!(buffers.lock().processes.len(), EXITED_MAX);

        // A pid reused by a new process: the new one's buffer, and the old entry's exit
        // no longer counts against the caps.
        let reused = 1_000;
        let writer = buffers.start(reused, "p0", 10, 6_000).unwrap();
        writer.push(line("new"));
        let now = buffers.read(reused, None).unwrap();
        assert_eq!((texts(&now), now.exited.clone()), (vec!["new"], None));
        assert_eq!(buffers.lock().exited.len(), EXITED_MAX - 1);
        // Still live: never forgotten for others' exits.
        for pid in 2_000..2_100 {
            buffers.start(pid, "p0", 10, 0);
            buffers.exited(pid, "0", 7_000);
        }
        assert!(buffers.read(reused, None).is_some());
    }
}

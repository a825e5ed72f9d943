//! The `normal` queue's log of changes: what a group commit appends (one `write` to the OS)
//! before its jobs are acknowledged, and what a thread then applies to the SQLite table in
//! larger transactions. A process crash loses nothing the OS was given; at the next start
//! the logs left beside the file are applied to the table before it is read.
//!
//! Files: `QUEUE-log.N` beside the queue file, N counting up; the writer appends to the
//! newest, the applier starts a new one before it applies, and removes the older ones once
//! the table holds their changes. A record is `[u32 length][u64 checksum][body]`
//! (little-endian), so that a record a crash cut short is recognised and ignored (its jobs
//! were not acknowledged).

use super::StoredJob;
use crate::gearman::packet::Priority;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One change to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add(StoredJob),
    Done { unique: Bytes, function: Bytes },
}

/// The log being written, and what it holds that the table does not yet.
pub struct Log {
    queue: PathBuf,
    number: u64,
    file: std::fs::File,
    /// Bytes of whole records in the current file (a failed write is cut back to this).
    len: u64,
    /// Written to a log, not yet to the table, in order.
    pub unapplied: Vec<Change>,
    /// Files whose changes are all in `unapplied` (or applied): removed once applied.
    retired: Vec<u64>,
}

/// A log file's path.
fn path_of(queue: &Path, number: u64) -> PathBuf {
    let mut name = queue.as_os_str().to_owned();
    name.push(format!("-log.{number}"));
    PathBuf::from(name)
}

/// The numbers of the log files beside `queue`, oldest first.
pub fn existing(queue: &Path) -> std::io::Result<Vec<u64>> {
    let dir = match queue.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = queue.file_name() else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}-log.", name.to_string_lossy());
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let entry_name = entry.file_name();
        let entry_name = entry_name.to_string_lossy();
        if let Some(n) = entry_name
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Every change in the log files `numbers`, in order, and warnings for what could not be
/// read (a record cut short by a crash, or damage).
pub fn read(queue: &Path, numbers: &[u64]) -> std::io::Result<(Vec<Change>, Vec<String>)> {
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for &n in numbers {
        let path = path_of(queue, n);
        let bytes = std::fs::read(&path)?;
        let mut at = 0;
        let mut records = 0;
        while at < bytes.len() {
            match decode(&bytes[at..]) {
                Some((change, used)) => {
                    changes.push(change);
                    at += used;
                    records += 1;
                }
                None => {
                    warnings.push(format!(
                        "{}: {} bytes after record {records} cannot be read (a write cut \
                         short by a crash: its jobs were never acknowledged); ignored",
                        path.display(),
                        bytes.len() - at
                    ));
                    break;
                }
            }
        }
    }
    Ok((changes, warnings))
}

/// Removes the log files `numbers`.
pub fn remove(queue: &Path, numbers: &[u64]) {
    for &n in numbers {
        let _ = std::fs::remove_file(path_of(queue, n));
    }
}

impl Log {
    /// Starts log file `number` (empty).
    pub fn start(queue: &Path, number: u64) -> std::io::Result<Log> {
        Ok(Log {
            queue: queue.to_path_buf(),
            number,
            file: create(queue, number)?,
            len: 0,
            unapplied: Vec::new(),
            retired: Vec::new(),
        })
    }

    /// Appends `changes` in one write; on failure the file is cut back to its whole records.
    pub fn append(&mut self, changes: &[Change]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(changes.len() * 96);
        for change in changes {
            encode(change, &mut bytes)?;
        }
        match self.file.write_all(&bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.unapplied.extend(changes.iter().cloned());
                Ok(())
            }
            Err(e) => {
                // A part written would hide every later record: cut it off, or, if even that
                // fails, go on in a new file.
                if self.file.set_len(self.len).is_err() {
                    let _ = self.next_file();
                }
                Err(e)
            }
        }
    }

    /// Starts a new file and takes what is to be applied: the caller applies it and then
    /// calls [`Log::applied`], or [`Log::not_applied`] with it.
    pub fn take(&mut self) -> std::io::Result<Vec<Change>> {
        if self.unapplied.is_empty() {
            return Ok(Vec::new());
        }
        // (An empty file holds nothing to retire: after a failed apply, the changes are all
        // in files already retired.)
        if self.len > 0 {
            self.next_file()?;
        }
        Ok(std::mem::take(&mut self.unapplied))
    }

    fn next_file(&mut self) -> std::io::Result<()> {
        let file = create(&self.queue, self.number + 1)?;
        self.retired.push(self.number);
        self.number += 1;
        self.file = file;
        self.len = 0;
        Ok(())
    }

    /// The table holds everything taken: the files before the current one go.
    pub fn applied(&mut self) {
        remove(&self.queue, &self.retired);
        self.retired.clear();
    }

    /// Applying `changes` failed: they go back in front, to be applied again.
    pub fn not_applied(&mut self, mut changes: Vec<Change>) {
        changes.append(&mut self.unapplied);
        self.unapplied = changes;
    }

    /// At a clean stop, once everything is applied: no log is left.
    pub fn remove_all(&mut self) {
        self.retired.push(self.number);
        self.applied();
    }
}

fn create(queue: &Path, number: u64) -> std::io::Result<std::fs::File> {
    let path = path_of(queue, number);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        })
}

const ADD: u8 = 1;
const DONE: u8 = 2;

fn encode(change: &Change, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 12]); // length and checksum, filled in below
    match change {
        Change::Add(job) => {
            out.push(ADD);
            out.push(match job.priority {
                Priority::High => 0,
                Priority::Normal => 1,
                Priority::Low => 2,
            });
            out.extend_from_slice(&job.when.to_le_bytes());
            field(out, &job.unique)?;
            field(out, &job.function)?;
            field(out, &job.data)?;
        }
        Change::Done { unique, function } => {
            out.push(DONE);
            field(out, unique)?;
            field(out, function)?;
        }
    }
    let body = start + 12;
    let len = length(out.len() - body)?;
    let sum = checksum(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..body].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) -> std::io::Result<()> {
    out.extend_from_slice(&length(bytes.len())?.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A length as a record holds it (a job came in a packet whose length is 32 bits, so this
/// fails only for a record of several fields each near 4 GiB).
fn length(len: usize) -> std::io::Result<u32> {
    u32::try_from(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a change of {len} bytes is too large for the log"),
        )
    })
}

/// A record at the start of `bytes` and its length; `None` if it is not whole and intact.
fn decode(bytes: &[u8]) -> Option<(Change, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
    let body = bytes.get(12..12usize.checked_add(len)?)?;
    if checksum(body) != sum {
        return None;
    }
    let mut reader = Reader(body);
    let change = match reader.byte()? {
        ADD => {
            let priority = match reader.byte()? {
                0 => Priority::High,
                1 => Priority::Normal,
                2 => Priority::Low,
                _ => return None,
            };
            let when = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
            Change::Add(StoredJob {
                unique: reader.field()?,
                function: reader.field()?,
                data: reader.field()?,
                priority,
                when,
            })
        }
        DONE => Change::Done {
            unique: reader.field()?,
            function: reader.field()?,
        },
        _ => return None,
    };
    reader.0.is_empty().then_some((change, 12 + len))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn field(&mut self) -> Option<Bytes> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len).map(Bytes::copy_from_slice)
    }
}

/// FNV-1a, 64 bits: enough to tell a whole record from one a crash cut short or damage.
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(unique: &str) -> Change {
        Change::Add(StoredJob {
            unique: Bytes::copy_from_slice(unique.as_bytes()),
            function: Bytes::from_static(b"f"),
            priority: Priority::Low,
            data: Bytes::from_static(b"\0payload\xff"),
            when: 1_700_000_000,
        })
    }

    #[test]
    fn changes_read_back_in_order_and_a_cut_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        let mut log = Log::start(&queue, 3).unwrap();
        let first = vec![add("a"), add("b")];
        let done = Change::Done {
            unique: Bytes::from_static(b"a"),
            function: Bytes::from_static(b"f"),
        };
        log.append(&first).unwrap();
        log.append(std::slice::from_ref(&done)).unwrap();
        assert_eq!(existing(&queue).unwrap(), vec![3]);
        let (changes, warnings) = read(&queue, &[3]).unwrap();
        assert_eq!(changes, vec![add("a"), add("b"), done.clone()]);
        assert!(warnings.is_empty());
        // A crash in the middle of the next write: its record is cut short.
        let mut partial = Vec::new();
        encode(&add("c"), &mut partial).unwrap();
        let path = path_of(&queue, 3);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&partial[..partial.len() - 3]);
        std::fs::write(&path, bytes).unwrap();
        let (changes, warnings) = read(&queue, &[3]).unwrap();
        assert_eq!(changes.len(), 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        // Taking starts file 4; once applied, 3 goes.
        let taken = log.take().unwrap();
        assert_eq!(taken.len(), 3);
        assert_eq!(existing(&queue).unwrap(), vec![3, 4]);
        log.applied();
        assert_eq!(existing(&queue).unwrap(), vec![4]);
        log.remove_all();
        assert!(existing(&queue).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_record_is_not_read_as_a_job() {
        let mut bytes = Vec::new();
        encode(&add("a"), &mut bytes).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            if let Some((change, _)) = decode(&damaged) {
                panic!("byte {i} damaged, still read as {change:?}");
            }
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(decode(&bytes), Some((add("a"), bytes.len())));
    }
}

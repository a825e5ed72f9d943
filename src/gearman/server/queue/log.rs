//! The `normal` queue's log of changes: what a group commit appends (one `write` to the OS)
//! before its jobs are acknowledged, and what a thread then applies to the SQLite table in
//! larger transactions. A process crash loses nothing the OS was given; at the next start
//! the logs left beside the file are applied to the table before it is read.
//!
//! Files: `QUEUE-log.N` beside the queue file, N counting up; the writer appends to the
//! newest, the applier starts a new one before it applies, and removes the older ones once
//! the table holds their changes. Each write (one group commit) is a frame,
//! `[u32 length][u64 checksum][changes]` (little-endian, FNV-1a over the changes), so that a
//! write a crash cut short, or persisted only in part at a power loss, is recognised and
//! ignored as a whole (its jobs were not acknowledged), and damage is told from it: a cut
//! write is the last one, with no whole frame after it.

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
    /// `full`: each append is forced to the disk (fdatasync) before it returns, into a file
    /// made at its full size beforehand, so that the fsync writes the records over blocks
    /// already there and need not record a new size (half the cost on ext4).
    durable: bool,
    number: u64,
    file: std::fs::File,
    /// Bytes of whole records in the current file (a failed write is cut back to this).
    len: u64,
    /// Written to a log, not yet to the table, in order.
    pub unapplied: Vec<Change>,
    /// Full files, oldest first: removed once the table holds their changes.
    retired: Vec<u64>,
    /// A durable log's next file, made ahead (see [`Log::spare_needed`]).
    spare: Option<std::fs::File>,
    /// Files whose changes the table holds, removed after the next checkpoint has forced the
    /// table to the disk.
    applied: Vec<u64>,
    /// Tests: the next write stops after this many bytes, as on a disk that fills up.
    #[cfg(test)]
    fail_after: Option<usize>,
}

/// Bytes of log in one file before the next is started.
const FILE_SIZE: u64 = 4 * 1024 * 1024;

/// A log file's path.
fn path_of(queue: &Path, number: u64) -> PathBuf {
    let mut name = queue.as_os_str().to_owned();
    name.push(format!("-log.{number}"));
    PathBuf::from(name)
}

/// The largest number a log file has (far beyond what a server reaches: a new file every
/// 4 MB of changes).
const MAX_NUMBER: u64 = 999_999_999_999;

/// The numbers of the log files beside `queue`, oldest first. A name that looks like a log's
/// but is not one this server writes (`-log.007`, `-log.+5`, a number past [`MAX_NUMBER`])
/// is refused, named: it cannot be put in order with the others.
pub fn existing(queue: &Path) -> Result<Vec<u64>, String> {
    let Some(name) = queue.file_name() else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}-log.", name.to_string_lossy());
    let dir = directory(queue);
    let listing = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry_name = entry.map_err(listing)?.file_name();
        let entry_name = entry_name.to_string_lossy();
        let Some(suffix) = entry_name.strip_prefix(&prefix) else {
            continue;
        };
        if suffix == "next" {
            continue; // a spare being made
        }
        match canonical_number(suffix) {
            Some(n) => numbers.push(n),
            None => {
                return Err(format!(
                    "{}: not a name this server gives its logs (-log.N, N a number up to \
                     {MAX_NUMBER} without leading zeros); move it away",
                    dir.join(&*entry_name).display()
                ));
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn canonical_number(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    let n: u64 = text.parse().ok().filter(|_| digits_only && !leading_zero)?;
    (n <= MAX_NUMBER).then_some(n)
}

fn directory(queue: &Path) -> &Path {
    match queue.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Every change in the log files `numbers`, in order, and warnings for a write a crash cut
/// short (in the newest file, with no whole write after it: its jobs were never
/// acknowledged). A file's zeros after its last write are room it was made with. Anything
/// else unreadable is damage, refused with where it is: the writes after it would be lost.
pub fn read(queue: &Path, numbers: &[u64]) -> Result<(Vec<Change>, Vec<String>), String> {
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for (i, &n) in numbers.iter().enumerate() {
        let newest = i + 1 == numbers.len();
        let path = path_of(queue, n);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut at = 0;
        let mut writes = 0;
        while at < bytes.len() {
            if let Some((frame, used)) = decode_frame(&bytes[at..]) {
                changes.extend(frame);
                at += used;
                writes += 1;
                continue;
            }
            let rest = &bytes[at..];
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            if newest && !whole_frame_within(&rest[1..]) {
                warnings.push(format!(
                    "{}: write {} (from byte {at}) was cut short by a crash (its jobs were never \
                     acknowledged); ignored",
                    path.display(),
                    writes + 1,
                ));
                break;
            }
            return Err(format!(
                "{}: write {} at byte {at} is damaged and {} bytes follow it (not a write a \
                 crash cut short: {}); the changes from there on cannot be read. Move the file \
                 aside to start without them",
                path.display(),
                writes + 1,
                rest.len(),
                if newest {
                    "whole writes follow it"
                } else {
                    "newer log files follow it"
                }
            ));
        }
    }
    Ok((changes, warnings))
}

/// Whether a whole, intact frame starts anywhere in `bytes` (the bytes after one that is
/// not: a crash cuts only the last write). The search gives up, answering yes (so the start
/// is refused rather than changes dropped), past 256 MB of checksummed bytes.
fn whole_frame_within(bytes: &[u8]) -> bool {
    let mut budget: usize = 256 << 20;
    for at in 0..bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else {
            return false;
        };
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        if len == 0 || at + 12 + len > bytes.len() {
            continue;
        }
        if budget < len {
            return true;
        }
        budget -= len;
        if decode_frame(&bytes[at..]).is_some() {
            return true;
        }
    }
    false
}

/// Removes the log files `numbers`, in order, stopping at the first that cannot be removed:
/// an older file left alone while newer ones went would be applied again at the next start
/// without the deletions in the newer ones, bringing finished jobs back. Returns how many
/// went, and why the next did not.
pub fn remove(queue: &Path, numbers: &[u64]) -> (usize, Option<String>) {
    for (i, &n) in numbers.iter().enumerate() {
        let path = path_of(queue, n);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return (i, Some(format!("cannot remove {}: {e}", path.display()))),
        }
    }
    (numbers.len(), None)
}

impl Log {
    /// Starts log file `number` (empty); `durable`: see [`Log::durable`].
    pub fn start(queue: &Path, number: u64, durable: bool) -> std::io::Result<Log> {
        Ok(Log {
            queue: queue.to_path_buf(),
            durable,
            number,
            file: create(queue, number, durable)?,
            len: 0,
            unapplied: Vec::new(),
            retired: Vec::new(),
            spare: None,
            applied: Vec::new(),
            #[cfg(test)]
            fail_after: None,
        })
    }

    /// Appends `changes` in one write (forced to the disk when durable) and takes them, to
    /// be applied; on failure the file is cut back to its whole records and they are left
    /// in `changes`.
    pub fn append(&mut self, changes: &mut Vec<Change>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let bytes = encode_frame(changes)?;
        if self.len > 0 && self.len + bytes.len() as u64 > FILE_SIZE {
            self.next_file()?;
        }
        let written = self.write_at(&bytes);
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.unapplied.append(changes);
                Ok(())
            }
            Err(e) => {
                // A part written would hide every later record: wipe it, or, if even that
                // fails, go on in a new file.
                let wiped = self
                    .file
                    .write_all_at(&vec![0; bytes.len()], self.len)
                    .and_then(|()| {
                        if self.durable {
                            self.file.sync_data()
                        } else {
                            Ok(())
                        }
                    });
                if wiped.is_err() {
                    let _ = self.next_file();
                }
                Err(e)
            }
        }
    }

    /// Writes `bytes` after the whole records (forced to the disk when durable). Each write
    /// names its place: after a failed one the next goes where it began, over what it left.
    fn write_at(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        #[cfg(test)]
        if let Some(n) = self.fail_after.take() {
            self.file
                .write_all_at(&bytes[..n.min(bytes.len())], self.len)?;
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        self.file.write_all_at(bytes, self.len)?;
        if self.durable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Whether a durable log has no next file made yet: then the checkpoint thread makes one
    /// ([`make_spare`], outside the writers' lock) and installs it ([`Log::install_spare`]).
    pub fn spare_needed(&self) -> bool {
        self.durable && self.spare.is_none()
    }

    pub fn install_spare(&mut self, file: std::fs::File) {
        self.spare.get_or_insert(file);
    }

    /// Takes what is to be applied, with the full files it came from: the caller applies it
    /// and then calls [`Log::applied`], or [`Log::not_applied`].
    pub fn take(&mut self) -> (Vec<Change>, Vec<u64>) {
        (
            std::mem::take(&mut self.unapplied),
            std::mem::take(&mut self.retired),
        )
    }

    fn next_file(&mut self) -> std::io::Result<()> {
        let next = self.number + 1;
        if next > MAX_NUMBER {
            return Err(std::io::Error::other(format!(
                "the log's files are numbered up to {MAX_NUMBER}; stop the server cleanly (it \
                 leaves no log) to start again from 0"
            )));
        }
        let file = match self.spare.take() {
            Some(file) => {
                let named = std::fs::rename(spare_path(&self.queue), path_of(&self.queue, next))
                    .and_then(|()| sync_directory(&self.queue));
                if let Err(e) = named {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot name {}: {e}", path_of(&self.queue, next).display()),
                    ));
                }
                file
            }
            None => create(&self.queue, next, self.durable)?,
        };
        self.retired.push(self.number);
        self.number += 1;
        self.file = file;
        self.len = 0;
        Ok(())
    }

    /// The table holds what was taken: the full files it came from go after the next
    /// checkpoint ([`Log::checkpointed`]).
    pub fn applied(&mut self, files: Vec<u64>) {
        self.applied.extend(files);
    }

    /// A checkpoint forced the table to the disk: the files applied before it go, oldest
    /// first; one that cannot go stops the others, all tried again at the next checkpoint
    /// (the reason is returned).
    pub fn checkpointed(&mut self) -> Option<String> {
        let (removed, failed) = remove(&self.queue, &self.applied);
        self.applied.drain(..removed);
        failed
    }

    /// A `normal` log's current file, to be forced to the disk now and then (outside the
    /// writers' lock), so that an OS crash or a power loss costs about a second at most.
    pub fn to_sync(&self) -> Option<std::fs::File> {
        if self.durable {
            return None;
        }
        self.file.try_clone().ok()
    }

    /// Applying `changes` failed: they go back in front, to be applied again.
    pub fn not_applied(&mut self, mut changes: Vec<Change>, mut files: Vec<u64>) {
        changes.append(&mut self.unapplied);
        self.unapplied = changes;
        files.append(&mut self.retired);
        self.retired = files;
    }

    /// At a clean stop, once everything is applied: no log is left.
    pub fn remove_all(&mut self) {
        let mut files = std::mem::take(&mut self.applied);
        files.append(&mut self.retired);
        if !files.contains(&self.number) {
            files.push(self.number);
        }
        let (removed, failed) = remove(&self.queue, &files);
        if let Some(reason) = failed {
            tracing::warn!(
                "job server: {reason}; it and the newer logs are applied again at the next start"
            );
            // Kept, in order: a second call must not remove a newer file without it.
            self.applied = files.split_off(removed);
        }
        if self.spare.take().is_some() {
            let _ = std::fs::remove_file(spare_path(&self.queue));
        }
    }
}

#[cfg(test)]
impl Log {
    /// Makes the next writes go to `path` (`/dev/full`: a full disk).
    pub fn write_to_for_test(&mut self, path: &Path) {
        self.file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    }
}

/// Where a durable log's next file is made, before it is given its number.
fn spare_path(queue: &Path) -> PathBuf {
    let mut name = queue.as_os_str().to_owned();
    name.push("-log.next");
    PathBuf::from(name)
}

/// Removes a spare an earlier server left (it holds nothing: a spare gets records only
/// once it is named).
pub fn remove_spare(queue: &Path) {
    let _ = std::fs::remove_file(spare_path(queue));
}

/// Makes a durable log's next file (see [`Log::spare_needed`]); a spare an earlier server
/// left is made again.
pub fn make_spare(queue: &Path) -> std::io::Result<std::fs::File> {
    made_at(&spare_path(queue), queue, true, false)
}

fn sync_directory(queue: &Path) -> std::io::Result<()> {
    std::fs::File::open(directory(queue))?.sync_all()
}

/// Creates log file `number`; a durable one at its full size, zeros forced to the disk, and
/// its name too (the directory synced).
fn create(queue: &Path, number: u64, durable: bool) -> std::io::Result<std::fs::File> {
    made_at(&path_of(queue, number), queue, durable, durable)
}

/// A new log file at `path`, durable or not; `named`: its directory is synced too.
fn made_at(
    path: &Path,
    queue: &Path,
    durable: bool,
    named: bool,
) -> std::io::Result<std::fs::File> {
    let made = (|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        if durable {
            // Written, not merely allocated: an extent allocated but unwritten is recorded
            // as written at the first fsync that covers it, which is what this avoids.
            let zeros = vec![0u8; 64 * 1024];
            let mut file_ref = &file;
            for _ in 0..FILE_SIZE / zeros.len() as u64 {
                file_ref.write_all(&zeros)?;
            }
            file.sync_all()?;
        }
        if named {
            sync_directory(queue)?;
        }
        Ok(file)
    })();
    made.map_err(|e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
    })
}

const ADD: u8 = 1;
const DONE: u8 = 2;

/// One write: the frame of `changes`.
fn encode_frame(changes: &[Change]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(12 + changes.len() * 96);
    out.extend_from_slice(&[0; 12]); // length and checksum, filled in below
    for change in changes {
        encode(change, &mut out)?;
    }
    let len = length(out.len() - 12)?;
    let sum = checksum(&out[12..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..12].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

fn encode(change: &Change, out: &mut Vec<u8>) -> std::io::Result<()> {
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

/// The changes of the frame at the start of `bytes`, and its length; `None` if it is not
/// whole and intact.
fn decode_frame(bytes: &[u8]) -> Option<(Vec<Change>, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
    let body = bytes.get(12..12usize.checked_add(len)?)?;
    if len == 0 || checksum(body) != sum {
        return None;
    }
    let mut reader = Reader(body);
    let mut changes = Vec::new();
    while !reader.0.is_empty() {
        changes.push(decode(&mut reader)?);
    }
    Some((changes, 12 + len))
}

fn decode(reader: &mut Reader<'_>) -> Option<Change> {
    Some(match reader.byte()? {
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
    })
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
        for durable in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let queue = dir.path().join("q.sqlite");
            let mut log = Log::start(&queue, 3, durable).unwrap();
            let done = Change::Done {
                unique: Bytes::from_static(b"a"),
                function: Bytes::from_static(b"f"),
            };
            log.append(&mut vec![add("a"), add("b")]).unwrap();
            log.append(&mut vec![done.clone()]).unwrap();
            assert_eq!(existing(&queue).unwrap(), vec![3]);
            let (changes, warnings) = read(&queue, &[3]).unwrap();
            assert_eq!(changes, vec![add("a"), add("b"), done.clone()]);
            assert!(warnings.is_empty(), "{durable}: {warnings:?}");
            // A crash in the middle of the next write: its record is cut short.
            let partial = encode_frame(&[add("c")]).unwrap();
            let path = path_of(&queue, 3);
            let mut bytes = std::fs::read(&path).unwrap();
            let end = usize::try_from(log.len).unwrap();
            bytes.truncate(end);
            bytes.extend_from_slice(&partial[..partial.len() - 3]);
            if durable {
                bytes.resize(usize::try_from(FILE_SIZE).unwrap(), 0);
            }
            std::fs::write(&path, bytes).unwrap();
            let (changes, warnings) = read(&queue, &[3]).unwrap();
            assert_eq!(changes.len(), 3);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            let (taken, files) = log.take();
            assert_eq!((taken.len(), files.clone()), (3, vec![]));
            log.applied(files);
            log.remove_all();
            assert!(existing(&queue).unwrap().is_empty());
        }
    }

    #[test]
    fn a_full_file_is_removed_once_its_changes_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        let mut log = Log::start(&queue, 0, true).unwrap();
        assert!(log.spare_needed());
        log.install_spare(make_spare(&queue).unwrap());
        let big = Change::Add(StoredJob {
            unique: Bytes::from_static(b"u"),
            function: Bytes::from_static(b"f"),
            priority: Priority::Normal,
            data: Bytes::from(vec![7u8; 1_000_000]),
            when: 0,
        });
        for _ in 0..5 {
            log.append(&mut vec![big.clone()]).unwrap();
        }
        // Four fit in the first file; the fifth went to the spare, named 1.
        assert_eq!(existing(&queue).unwrap(), vec![0, 1]);
        assert!(log.spare_needed());
        let (changes, files) = log.take();
        assert_eq!((changes.len(), files.clone()), (5, vec![0]));
        // Applying failed: all of it is taken again next time, with the file.
        log.not_applied(changes, files);
        log.append(&mut vec![add("after")]).unwrap();
        let (changes, files) = log.take();
        assert_eq!((changes.len(), files.clone()), (6, vec![0]));
        assert_eq!(changes[5], add("after"));
        log.applied(files);
        assert_eq!(
            existing(&queue).unwrap(),
            vec![0, 1],
            "kept until a checkpoint"
        );
        log.checkpointed();
        assert_eq!(existing(&queue).unwrap(), vec![1]);
        let (read_back, warnings) = read(&queue, &[1]).unwrap();
        assert_eq!((read_back.len(), warnings.len()), (2, 0));
        log.remove_all();
        assert!(existing(&queue).unwrap().is_empty());
    }

    // Found trying issue 14 (D1): after a write that failed part way (a full disk), the next
    // writes went after what it left, the reader stopped there, and jobs acknowledged later
    // were lost at the next start.
    #[test]
    fn after_a_write_that_failed_part_way_the_next_records_are_read() {
        for durable in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let queue = dir.path().join("q.sqlite");
            let mut log = Log::start(&queue, 0, durable).unwrap();
            log.append(&mut vec![add("a")]).unwrap();
            log.fail_after = Some(20);
            assert!(log.append(&mut vec![add("lost"), add("lost too")]).is_err());
            log.append(&mut vec![add("b")]).unwrap();
            let (changes, warnings) = read(&queue, &[0]).unwrap();
            assert_eq!(changes, vec![add("a"), add("b")], "durable {durable}");
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    // Found trying issue 14 (D2): a log file that could not be removed was applied again at
    // every start, after newer files with its jobs' deletions had gone.
    #[test]
    fn files_are_removed_oldest_first_and_one_that_cannot_go_keeps_the_newer() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        let mut log = Log::start(&queue, 0, false).unwrap();
        for n in [1, 3] {
            drop(create(&queue, n, false).unwrap());
        }
        // A directory where log 2 would be: it cannot be removed as a file.
        std::fs::create_dir(path_of(&queue, 2)).unwrap();
        std::fs::write(path_of(&queue, 2).join("x"), b"x").unwrap();
        log.applied(vec![1, 2, 3]);
        let reason = log.checkpointed().expect("log 2 cannot go");
        assert!(reason.contains("q.sqlite-log.2"), "{reason}");
        assert!(!path_of(&queue, 1).exists());
        assert!(
            path_of(&queue, 3).exists(),
            "a newer file stays while an older one does"
        );
        std::fs::remove_dir_all(path_of(&queue, 2)).unwrap();
        assert_eq!(log.checkpointed(), None);
        assert!(!path_of(&queue, 3).exists());
    }

    // Found re-checking issue 14: at a stop, an older log that could not be removed was
    // forgotten, and a second call (the queue's drop after its close) removed the newest,
    // whose deletions then never reached the next start: finished jobs came back.
    #[test]
    fn a_stop_that_cannot_remove_an_older_log_keeps_the_newer() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        std::fs::create_dir(path_of(&queue, 0)).unwrap();
        std::fs::write(path_of(&queue, 0).join("x"), b"x").unwrap();
        let mut log = Log::start(&queue, 1, false).unwrap();
        log.append(&mut vec![add("a")]).unwrap();
        log.applied(vec![0]);
        for _ in 0..2 {
            log.remove_all();
            assert!(
                path_of(&queue, 1).exists(),
                "the newest stays while an older one does"
            );
        }
        std::fs::remove_dir_all(path_of(&queue, 0)).unwrap();
        log.remove_all();
        assert!(existing(&queue).unwrap().is_empty());
    }

    // Found trying issue 14 (D3, and again in the re-check): damage in the middle of a log
    // (a byte flipped, even one making a length point past the end) was taken for a write a
    // crash cut short, and the writes after it were dropped with the file.
    #[test]
    fn damage_is_refused_and_only_the_newest_files_last_write_may_be_cut() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        for durable in [false, true] {
            let mut log = Log::start(&queue, 0, durable).unwrap();
            for unique in ["a", "b", "c"] {
                log.append(&mut vec![add(unique)]).unwrap();
            }
            let path = path_of(&queue, 0);
            let whole = std::fs::read(&path).unwrap();
            let frame = whole.len().min(usize::try_from(log.len).unwrap()) / 3;
            // A byte of the second write flipped, its checksum's, its length's lowest and
            // highest: damage, named.
            for at in [frame + 20, frame + 5, frame, frame + 3] {
                let mut damaged = whole.clone();
                damaged[at] ^= 0x01;
                std::fs::write(&path, &damaged).unwrap();
                let err = read(&queue, &[0]).unwrap_err();
                assert!(
                    err.contains("q.sqlite-log.0") && err.contains("damaged"),
                    "byte {at}: {err}"
                );
            }
            // The last write cut short: a crash, in the newest file only.
            let mut cut = whole[..3 * frame - 5].to_vec();
            if durable {
                cut.resize(whole.len(), 0);
            }
            std::fs::write(&path, &cut).unwrap();
            let (changes, warnings) = read(&queue, &[0]).unwrap();
            assert_eq!((changes.len(), warnings.len()), (2, 1));
            drop(create(&queue, 1, false).unwrap());
            let err = read(&queue, &[0, 1]).unwrap_err();
            assert!(err.contains("damaged"), "not the newest file: {err}");
            remove(&queue, &[0, 1]);
        }
    }

    // A power loss during a `full` write may leave any of its blocks unwritten (zeros, in a
    // file made of zeros), not only its end: the write is still one a crash cut short.
    #[test]
    fn a_last_write_with_a_hole_is_a_cut_write() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        let mut log = Log::start(&queue, 0, true).unwrap();
        log.append(&mut vec![add("kept")]).unwrap();
        let first = usize::try_from(log.len).unwrap();
        let big = |u: &str| {
            Change::Add(StoredJob {
                unique: Bytes::copy_from_slice(u.as_bytes()),
                function: Bytes::from_static(b"f"),
                priority: Priority::Normal,
                data: Bytes::from(vec![9u8; 5000]),
                when: 0,
            })
        };
        log.append(&mut vec![big("x"), big("y"), big("z")]).unwrap();
        let path = path_of(&queue, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[first + 4096..first + 8192].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let (changes, warnings) = read(&queue, &[0]).unwrap();
        assert_eq!(changes, vec![add("kept")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn names_that_are_not_this_servers_logs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("q.sqlite");
        for n in [0, 2, 10] {
            drop(create(&queue, n, false).unwrap());
        }
        std::fs::write(dir.path().join("q.sqlite-log.next"), b"").unwrap();
        std::fs::write(dir.path().join("other.sqlite-log.5"), b"").unwrap();
        assert_eq!(existing(&queue).unwrap(), vec![0, 2, 10]);
        for name in [
            "q.sqlite-log.007",
            "q.sqlite-log.+5",
            "q.sqlite-log.99999999999999999999",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
            let err = existing(&queue).unwrap_err();
            assert!(err.contains(name), "{err}");
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }

    #[test]
    fn a_damaged_record_is_not_read_as_a_job() {
        let bytes = encode_frame(&[add("a"), add("b")]).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            if let Some((changes, _)) = decode_frame(&damaged) {
                panic!("byte {i} damaged, still read as {changes:?}");
            }
        }
        assert!(decode_frame(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(
            decode_frame(&bytes),
            Some((vec![add("a"), add("b")], bytes.len()))
        );
    }
}

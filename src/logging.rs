//! Log output. The host writes Gearman::Driver's line format, `(PID) [JOB] message`, for
//! events that carry `pid` and `job` fields, after a UTC timestamp and the level; other fields
//! follow as `key=value`. Worker processes write to stderr without a timestamp: the host
//! adds its own when it logs their lines.
//!
//! With `log_format = "json"` every line is one JSON object instead (`time`, `level`, `pid`,
//! `job`, `message`, then the other fields), for log shippers.
//!
//! A log file can be rotated: [`reopen`] (on SIGHUP and SIGUSR1) opens the configured path
//! again, so after `mv host.log host.log.1` the host writes a new `host.log`.
//!
//! The host never waits for its log: lines go through a bounded queue to a writer thread. If
//! the output stops being read (stderr to a stalled pipe, a blocking container log driver),
//! the host keeps supervising and answering its console; lines beyond the queue are dropped
//! and counted, and the count is logged once the output moves again. [`flush`] at exit.

use crate::config::{LogFormat, LogTarget};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The host's log: to stderr or appended to a file.
pub fn init_host(target: &LogTarget, level: &str, format: LogFormat) -> io::Result<()> {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level).map_err(io::Error::other)?;
    if !level.contains("notify") {
        // The file-watching crate's own chatter (a watch removed with its directory) is not
        // the operator's concern; its errors are, and the watcher logs what it does itself.
        filter = filter.add_directive("notify=error".parse().map_err(io::Error::other)?);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(DriverFormat {
            timestamps: true,
            json: format == LogFormat::Json,
        });
    if let LogTarget::File(path) = target {
        let file = open_log(path, format)?;
        let log = LogFile {
            path: path.clone(),
            format,
            file: Mutex::new(file),
        };
        if LOG_FILE.set(log).is_err() {
            return Err(io::Error::other("the log is already set up"));
        }
    }
    let (lines, queue) = std::sync::mpsc::sync_channel(LOG_QUEUE);
    let to_file = matches!(target, LogTarget::File(_));
    std::thread::Builder::new()
        .name("log".into())
        .spawn(move || write_lines(queue, to_file))?;
    if LOG_QUEUE_SENDER.set(lines).is_err() {
        return Err(io::Error::other("the log is already set up"));
    }
    builder
        .with_writer(|| QueuedLine(Vec::with_capacity(160)))
        .try_init()
        .map_err(io::Error::other)
}

/// Lines the host may have logged ahead of its log output before it drops them.
const LOG_QUEUE: usize = 10_000;

enum LogMessage {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

static LOG_QUEUE_SENDER: OnceLock<std::sync::mpsc::SyncSender<LogMessage>> = OnceLock::new();
static DROPPED_LINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One event's text, queued whole when tracing is done with it.
struct QueuedLine(Vec<u8>);

impl io::Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        let Some(queue) = LOG_QUEUE_SENDER.get() else {
            return;
        };
        let line = std::mem::take(&mut self.0);
        if queue.try_send(LogMessage::Line(line)).is_err() {
            DROPPED_LINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The log thread: writes queued lines to the log file (as it is after any [`reopen`]) or
/// to stderr, however long that takes.
fn write_lines(queue: std::sync::mpsc::Receiver<LogMessage>, to_file: bool) {
    use io::Write;
    let write = |bytes: &[u8]| match (to_file, LOG_FILE.get()) {
        (true, Some(log)) => {
            let mut file = log.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = file.write_all(bytes);
        }
        _ => {
            let _ = io::stderr().write_all(bytes);
        }
    };
    for message in queue {
        match message {
            LogMessage::Line(line) => write(&line),
            LogMessage::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        }
        let dropped = DROPPED_LINES.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            write(
                format!("{time}  WARN {dropped} log lines dropped: the log output was not read fast enough\n")
                    .as_bytes(),
            );
        }
    }
}

/// Waits (at most `limit`) until every line logged so far is written: before the host exits.
pub fn flush(limit: std::time::Duration) {
    let Some(queue) = LOG_QUEUE_SENDER.get() else {
        return;
    };
    let (done, written) = std::sync::mpsc::channel();
    let deadline = std::time::Instant::now() + limit;
    let mut message = LogMessage::Flush(done);
    loop {
        match queue.try_send(message) {
            Ok(()) => break,
            Err(std::sync::mpsc::TrySendError::Full(back))
                if std::time::Instant::now() < deadline =>
            {
                message = back;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// The host's log file, when it logs to one.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

struct LogFile {
    path: PathBuf,
    format: LogFormat,
    /// One writer at a time, so lines never interleave; swapped by [`reopen`].
    file: Mutex<File>,
}

/// Opens (appending) and writes a first line: later write errors cannot be reported
/// anywhere, so a log that cannot be written (a full disk) is refused now, while the error
/// can still be seen.
fn open_log(path: &Path, format: LogFormat) -> io::Result<File> {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open logfile {}: {e}", path.display()),
            )
        })?;
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let message = format!(
        "log opened by geardriver {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    match format {
        LogFormat::Text => writeln!(file, "{time}  INFO {message}"),
        LogFormat::Json => writeln!(
            file,
            "{}",
            serde_json::json!({"time": time.to_string(), "level": "INFO", "message": message})
        ),
    }
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write to logfile {}: {e}", path.display()),
        )
    })?;
    Ok(file)
}

/// Opens the log file's path again (after a rotation moved the old file away). `Ok(None)`
/// when the host logs to stderr; on an error the old file stays in use.
pub fn reopen() -> io::Result<Option<PathBuf>> {
    let Some(log) = LOG_FILE.get() else {
        return Ok(None);
    };
    let file = open_log(&log.path, log.format)?;
    *log.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
    Ok(Some(log.path.clone()))
}

/// A worker process's log: stderr, no timestamps, level from `GEARDRIVER_LOG` (default info).
pub fn init_worker() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEARDRIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(DriverFormat {
            timestamps: false,
            json: false,
        })
        .with_writer(|| QuietStderr)
        .try_init();
}

/// Standard error that never fails: a worker process outlives its host for up to
/// `shutdown_timeout`, and once the host is gone nobody reads the pipe. A line it cannot
/// write is dropped (tracing-subscriber would otherwise complain on that same stderr, and
/// panic when it cannot).
struct QuietStderr;

impl io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

struct DriverFormat {
    timestamps: bool,
    json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    pid: Option<String>,
    job: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
}

impl Fields {
    /// One JSON object: time, level, pid (a number), job, message, then the other fields.
    fn json(&self, level: &tracing::Level) -> String {
        let mut object = serde_json::Map::new();
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        object.insert("time".into(), time.to_string().into());
        object.insert("level".into(), level.as_str().into());
        if let Some(pid) = &self.pid {
            let pid = pid
                .parse::<u64>()
                .map_or_else(|_| pid.clone().into(), serde_json::Value::from);
            object.insert("pid".into(), pid);
        }
        if let Some(job) = &self.job {
            object.insert("job".into(), job.clone().into());
        }
        object.insert("message".into(), self.message.clone().into());
        for (key, value) in &self.rest {
            object.insert((*key).to_string(), value.clone().into());
        }
        serde_json::Value::Object(object).to_string()
    }

    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "pid" => self.pid = Some(value),
            "job" => self.job = Some(value),
            name => self.rest.push((name, value)),
        }
    }
}

impl<S, N> FormatEvent<S, N> for DriverFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.json {
            return writeln!(writer, "{}", fields.json(event.metadata().level()));
        }
        if self.timestamps {
            write!(
                writer,
                "{} ",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            )?;
        }
        write!(writer, "{:>5} ", event.metadata().level())?;
        match (&fields.pid, &fields.job) {
            (Some(pid), Some(job)) => write!(writer, "({pid}) [{job}] ")?,
            (None, Some(job)) => write!(writer, "[{job}] ")?,
            (Some(pid), None) => fields.rest.insert(0, ("pid", pid.clone())),
            (None, None) => {}
        }
        write!(writer, "{}", fields.message)?;
        for (key, value) in &fields.rest {
            write!(writer, " {key}={value}")?;
        }
        writeln!(writer)
    }
}

/// Lets a warning that can repeat many times a second (a failing `accept` when descriptors
/// run out) through at most once per `every`, counting the ones held back.
pub struct Throttle {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttle {
    pub const fn new(every: std::time::Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when this one may be logged (`n` were held back since the last), else
    /// `None`.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.every)
        {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_through_per_period() {
        let mut t = Throttle::new(std::time::Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.last = Some(std::time::Instant::now() - std::time::Duration::from_secs(3601));
        assert_eq!(t.allow(), Some(2));
    }
}

//! Starting one worker process and watching it: its output becomes log lines (and the
//! process's recent output, [`super::output`]), its exit an event for the supervisor.
//!
//! Plugin and command pools run the geardriver binary again in its hidden `worker` mode (a
//! tokio runtime cannot fork safely, and a fresh process is what a worker should be anyway);
//! the spec travels in the environment. A `program` pool runs the user's program under the
//! binary's hidden `launch` mode, its keeper ([`crate::keeper`]). Every process leads its own
//! process group, so stopping it for good also stops what it started; each inherits the
//! stats table's memfd.
//!
//! Each child is reaped by the one task that awaits it (tokio waits on a pidfd); nothing
//! calls `waitpid(-1)`, which would steal exit statuses.

use super::Event;
use super::output::{OutputBuffers, OutputLine, OutputWriter, Stream};
use crate::config::{PoolConfig, WorkerKind};
use crate::gearman::ServerAddr;
use crate::stats::{StatsTable, now_ms};
use crate::worker_process::{FunctionSpec, Runner, SPEC_VAR, StatsSlot, WorkerSpec};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Longest output line logged; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

/// Environment a `program` finds its job servers and job name in.
pub const PROGRAM_SERVERS_VAR: &str = "GEARDRIVER_JOB_SERVERS";
pub const PROGRAM_JOB_VAR: &str = "GEARDRIVER_JOB";
/// The functions it serves, comma-separated, sorted: in the order of its `{file}` arguments.
pub const PROGRAM_FUNCTIONS_VAR: &str = "GEARDRIVER_FUNCTIONS";
/// Set with `max_jobs`: the program exits after that many jobs, to be replaced.
pub const PROGRAM_MAX_JOBS_VAR: &str = "GEARDRIVER_MAX_JOBS";
/// Set when a job has a `timeout`: each function's, in seconds (0 = none), in the order of
/// [`PROGRAM_FUNCTIONS_VAR`]. The program fails a job past it; the host kills one still busy
/// with it 2 s later (when it reports what it does).
pub const PROGRAM_TIMEOUTS_VAR: &str = "GEARDRIVER_TIMEOUTS";

/// What the supervisor knows when it starts a process.
pub struct Launch<'a> {
    pub exe: &'a Path,
    pub pool: &'a PoolConfig,
    pub servers: &'a [ServerAddr],
    pub stats: &'a StatsTable,
    /// Its slots: one per job it runs at once (the pool's concurrency).
    pub slots: &'a [usize],
    pub host_pid: u32,
    pub shutdown_timeout: std::time::Duration,
    /// max_lifetime with its random splay already added.
    pub lifetime_ms: Option<u64>,
    /// Where its recent output is kept, and how many lines of it (0 = none).
    pub output: &'a OutputBuffers,
    pub output_lines: usize,
}

/// Starts the process; returns its pid. Output and exit are reported through `events`.
pub fn spawn(launch: Launch<'_>, events: mpsc::UnboundedSender<Event>) -> io::Result<u32> {
    let pool = launch.pool;
    let mut command = tokio::process::Command::new(launch.exe);
    let servers: Vec<String> = launch.servers.iter().map(ToString::to_string).collect();
    let stats = StatsSlot {
        fd: launch.stats.share_with(&mut command),
        slot: launch.slots[0],
        more: launch.slots[1..].to_vec(),
    };
    let shutdown_timeout_ms = launch.shutdown_timeout.as_millis() as u64;
    if let Some(argv) = pool.program() {
        command
            .arg("launch")
            .arg("--parent-pid")
            .arg(launch.host_pid.to_string())
            .arg("--stats-fd")
            .arg(stats.fd.to_string())
            .arg("--slot")
            .arg(stats.slot.to_string())
            .arg("--shutdown-timeout-ms")
            .arg(shutdown_timeout_ms.to_string());
        if let Some(ms) = launch.lifetime_ms {
            command.arg("--max-lifetime-ms").arg(ms.to_string());
        }
        for job in &pool.jobs {
            command.arg("--function").arg(&job.name);
        }
        command
            .arg("--")
            .args(argv)
            .env(PROGRAM_SERVERS_VAR, servers.join(","))
            .env(PROGRAM_JOB_VAR, &pool.name)
            .env(
                PROGRAM_FUNCTIONS_VAR,
                pool.jobs
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        if let Some(n) = pool.limits.max_jobs {
            command.env(PROGRAM_MAX_JOBS_VAR, n.to_string());
        }
        if pool.jobs.iter().any(|j| j.timeout.is_some()) {
            let timeouts: Vec<String> = pool
                .jobs
                .iter()
                .map(|j| j.timeout.map_or(0.0, |t| t.as_secs_f64()).to_string())
                .collect();
            command.env(PROGRAM_TIMEOUTS_VAR, timeouts.join(","));
        }
    } else {
        let spec = WorkerSpec {
            pool: pool.name.clone(),
            servers,
            functions: pool
                .jobs
                .iter()
                .map(|job| FunctionSpec {
                    name: job.name.clone(),
                    run: match (&job.worker, job.argv()) {
                        (WorkerKind::Plugin(name), _) => Runner::Plugin(name.clone()),
                        (_, argv) => Runner::Command(argv.unwrap_or_default()),
                    },
                    decode: job.decode.clone(),
                    encode: job.encode.clone(),
                    timeout_ms: job.timeout.map(|t| t.as_millis() as u64),
                    prefetch: job.prefetch,
                    env: job.env.clone(),
                })
                .collect(),
            client_id: format!(
                "geardriver:{}:{}:{}",
                launch.host_pid, pool.name, stats.slot
            ),
            stats: Some(stats),
            max_jobs: pool.limits.max_jobs,
            max_lifetime_ms: launch.lifetime_ms,
            parent_pid: Some(launch.host_pid),
            shutdown_timeout_ms,
            concurrency: pool.limits.concurrency,
        };
        let json = serde_json::to_string(&spec).map_err(io::Error::other)?;
        // The pool name in argv makes `ps` readable; the spec is what the worker reads.
        command
            .arg("worker")
            .arg("--pool")
            .arg(&pool.name)
            .env(SPEC_VAR, json);
    }
    // The account it runs as (validation made a group's members agree): set before the
    // binary runs, so no worker code runs as the host's user. Supplementary groups are
    // dropped with it (std does so when root sets a uid).
    if let Some(user) = &pool.jobs[0].user {
        command.uid(user.uid).gid(user.gid);
        command.env("USER", &user.name).env("LOGNAME", &user.name);
        if let Some(home) = &user.home {
            command.env("HOME", home);
        }
    }
    for job in &pool.jobs {
        command.envs(&job.env);
    }
    // The console's secret is the host's, not its workers' (or their commands').
    for var in crate::config::SECRET_VARS {
        command.env_remove(var);
    }
    // Nor do systemd's notifications come from them.
    for var in crate::host::notify::VARS {
        command.env_remove(var);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the child exited before it got a pid"))?;
    let name: Arc<str> = Arc::from(pool.name.as_str());
    let output = (launch.output).start(pid, &pool.name, launch.output_lines, now_ms());
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(
            out,
            pid,
            name.clone(),
            Stream::Stdout,
            output.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(
            err,
            pid,
            name.clone(),
            Stream::Stderr,
            output,
        ));
    }
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = events.send(Event::Exited {
            pool: name.to_string(),
            pid,
            status,
        });
    });
    Ok(pid)
}

/// How many lines per second a process may have logged per stream, after a burst.
const LINES_PER_SECOND: f64 = 200.0;
const LINE_BURST: f64 = 500.0;

/// Logs every line a process writes as `(PID) [JOB] STREAM: line`, and keeps it in the
/// process's output buffer (when there is one). Lines are cut at [`MAX_LINE`] bytes and
/// decoded lossily, so no output can hurt the host. A process that writes faster than
/// [`LINES_PER_SECOND`] has the excess dropped from the log (and counted there; the buffer,
/// bounded anyway, still gets them), and reading pauses: its pipe fills and it is the one
/// slowed down, not the host.
async fn forward_lines(
    mut reader: impl AsyncRead + Unpin,
    pid: u32,
    job: Arc<str>,
    stream: Stream,
    output: Option<OutputWriter>,
) {
    let keep = |text: &str, cut: bool| {
        if let Some(output) = &output {
            output.push(OutputLine {
                time_ms: now_ms(),
                stream,
                text: text.to_string(),
                cut,
            });
        }
    };
    let stream_name = stream.name();
    // Small: a host with hundreds of processes has two of these each, and worker output is
    // sparse lines.
    let mut buf = vec![0u8; 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut budget = LINE_BURST;
    let mut refilled = tokio::time::Instant::now();
    let mut dropped: u64 = 0;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(b);
                } else {
                    cut = true;
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            budget = (budget + now.duration_since(refilled).as_secs_f64() * LINES_PER_SECOND)
                .min(LINE_BURST);
            refilled = now;
            let text = decode(&line);
            keep(&text, cut);
            if budget >= 1.0 {
                if dropped > 0 {
                    tracing::warn!(
                        pid,
                        job = &*job,
                        "{stream_name}: {dropped} lines dropped (more than {LINES_PER_SECOND} a second)"
                    );
                    dropped = 0;
                }
                budget -= 1.0;
                emit(pid, &job, stream_name, &text, cut);
            } else {
                dropped += 1;
            }
            line.clear();
            cut = false;
        }
        if budget < 1.0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    if !line.is_empty() {
        let text = decode(&line);
        keep(&text, cut);
        emit(pid, &job, stream_name, &text, cut);
    }
    if dropped > 0 {
        tracing::warn!(
            pid,
            job = &*job,
            "{stream_name}: {dropped} lines dropped (more than {LINES_PER_SECOND} a second)"
        );
    }
}

/// A line's text: lossy UTF-8, without the CR of a CRLF.
fn decode(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match String::from_utf8_lossy(line) {
        std::borrow::Cow::Borrowed(text) => std::borrow::Cow::Borrowed(text.trim_end_matches('\r')),
        std::borrow::Cow::Owned(text) => {
            std::borrow::Cow::Owned(text.trim_end_matches('\r').to_string())
        }
    }
}

fn emit(pid: u32, job: &str, stream: &str, text: &str, cut: bool) {
    let marker = if cut { " [line cut]" } else { "" };
    tracing::info!(pid, job, "{stream}: {text}{marker}");
}

/// Whether the process was ended by SIGKILL.
pub fn killed_by_sigkill(status: &io::Result<ExitStatus>) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(status, Ok(s) if s.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32))
}

/// How an exit reads in the log, and whether it was a success.
pub fn describe_exit(status: &io::Result<ExitStatus>) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (code.to_string(), code == 0),
            (None, Some(signal)) => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                (format!("{} (killed by {name})", 128 + signal), false)
            }
            (None, None) => ("unknown".into(), false),
        },
        Err(e) => (format!("unknown ({e})"), false),
    }
}

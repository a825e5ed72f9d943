//! `[driver] on_event`: a command the host runs when something an operator must hear about
//! happens (supervisord's event listeners): a job turns FAILED (the driver gave up restarting
//! it), a FAILED job recovers (it was reset), a process crashes (it ended without being
//! asked). The event is in the command's environment:
//!
//! - `GEARDRIVER_EVENT`: `job_failed`, `job_recovered` or `process_crashed`;
//! - `GEARDRIVER_EVENT_JOB`: the job (or group); `GEARDRIVER_EVENT_TIME`: seconds since the
//!   epoch; `GEARDRIVER_HOST_PID`;
//! - `GEARDRIVER_EVENT_REASON` (job_failed): why the driver gave up;
//! - `GEARDRIVER_EVENT_PID` and `GEARDRIVER_EVENT_STATUS` (process_crashed): the process and
//!   how it ended (`exited with status 1`, `exited with status 137 (killed by SIGKILL)`).
//!
//! The supervisor never waits for a command: events go to a task that runs at most
//! [`AT_ONCE`] commands at a time, each for at most [`TIMEOUT`] (then its group is killed),
//! in the config's directory; what a command prints is logged as `[on_event] …`. When more
//! than [`BACKLOG`] events wait, the newest are dropped and the count is logged.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};

/// Commands running at once.
pub const AT_ONCE: usize = 4;
/// How long one command may run.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Events waiting for a command before new ones are dropped.
pub const BACKLOG: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    JobFailed { job: String, reason: String },
    JobRecovered { job: String },
    ProcessCrashed { job: String, pid: u32, how: String },
}

impl HostEvent {
    pub fn name(&self) -> &'static str {
        match self {
            HostEvent::JobFailed { .. } => "job_failed",
            HostEvent::JobRecovered { .. } => "job_recovered",
            HostEvent::ProcessCrashed { .. } => "process_crashed",
        }
    }

    /// The variables the command gets.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut vars = vec![
            ("GEARDRIVER_EVENT", self.name().to_string()),
            ("GEARDRIVER_EVENT_TIME", now.to_string()),
            ("GEARDRIVER_HOST_PID", std::process::id().to_string()),
        ];
        match self {
            HostEvent::JobFailed { job, reason } => {
                vars.push(("GEARDRIVER_EVENT_JOB", job.clone()));
                vars.push(("GEARDRIVER_EVENT_REASON", reason.clone()));
            }
            HostEvent::JobRecovered { job } => vars.push(("GEARDRIVER_EVENT_JOB", job.clone())),
            HostEvent::ProcessCrashed { job, pid, how } => {
                vars.push(("GEARDRIVER_EVENT_JOB", job.clone()));
                vars.push(("GEARDRIVER_EVENT_PID", pid.to_string()));
                vars.push(("GEARDRIVER_EVENT_STATUS", how.clone()));
            }
        }
        vars
    }
}

/// Where the supervisor sends events: each with the command in force when it happened.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<(Vec<String>, HostEvent)>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Events {
    /// Starts the task that runs the commands (in `dir`); it ends when every sender is gone.
    pub fn start(dir: PathBuf) -> Events {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(run(rx, dir, dropped.clone()));
        Events { tx, dropped }
    }

    /// Runs `command` for `event`, unless the command is empty.
    pub fn tell(&self, command: &[String], event: HostEvent) {
        if command.is_empty() {
            return;
        }
        if self.tx.try_send((command.to_vec(), event)).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<(Vec<String>, HostEvent)>,
    dir: PathBuf,
    dropped: Arc<std::sync::atomic::AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(AT_ONCE));
    while let Some((argv, event)) = rx.recv().await {
        let lost = dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(
                dropped = lost,
                "on_event: events came faster than the command ran; {lost} were dropped"
            );
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            run_one(&argv, &event, &dir).await;
            drop(permit);
        });
    }
}

async fn run_one(argv: &[String], event: &HostEvent, dir: &std::path::Path) {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(dir)
        .envs(event.environment())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in crate::config::SECRET_VARS
        .iter()
        .chain(&crate::host::notify::VARS)
    {
        command.env_remove(var);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(command = %argv[0], event = event.name(), error = %e, "on_event: cannot run the command");
            return;
        }
    };
    let pid = child.id();
    // Whatever the command started goes with it when the host stops meanwhile.
    let mut group = pid.map(GroupGuard);
    let mut relays = Vec::new();
    if let Some(out) = child.stdout.take() {
        relays.push(tokio::spawn(relay(BufReader::new(out), "STDOUT")));
    }
    if let Some(err) = child.stderr.take() {
        relays.push(tokio::spawn(relay(BufReader::new(err), "STDERR")));
    }
    match tokio::time::timeout(TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::debug!(event = event.name(), "on_event: the command succeeded")
        }
        Ok(Ok(status)) => {
            tracing::warn!(event = event.name(), %status, "on_event: the command failed")
        }
        Ok(Err(e)) => {
            tracing::error!(event = event.name(), error = %e, "on_event: lost the command")
        }
        Err(_) => {
            tracing::warn!(event = event.name(), timeout = ?TIMEOUT, "on_event: the command ran too long; killing it");
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.wait().await;
        }
    }
    // Reaped: its group id may be reused now, so it is not killed again.
    if let Some(group) = group.as_mut() {
        group.0 = 0;
    }
    for relay in relays {
        let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
    }
}

async fn relay<R: tokio::io::AsyncBufRead + Unpin>(reader: R, stream: &'static str) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!("[on_event] {stream}: {line}");
    }
}

/// Kills a command's process group when dropped while it runs (the host stopping); 0 once
/// the command is reaped.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.0 != 0 {
            let _ = killpg(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
        }
    }
}

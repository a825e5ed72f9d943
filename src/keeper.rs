//! The keeper of a `program` worker: the small geardriver process the host starts for a
//! program that speaks Gearman itself. It leads the process group, runs the program in it,
//! and answers for it:
//!
//! - SIGTERM/SIGINT from the host are passed on; when the program exits, whatever it left in
//!   the group (helpers, `sleep &`) is ended, and the keeper exits as the program did;
//! - when the host is gone (even SIGKILLed), the program is asked to stop and has
//!   `shutdown_timeout` to finish its job, then the whole group goes;
//! - it keeps the program's stats slot. A program may say what it is doing by writing lines
//!   to the descriptor named in `$GEARDRIVER_STATUS_FD` (see [`Status`]); then the
//!   scoreboard, lastrun, lasterror and autoscaling know it exactly (and `state C` shows
//!   what its job is doing, as a plugin's `set_state` does). A program that writes
//!   nothing shows as idle once started, and the host guesses it busy while its jobs wait.

use crate::stats::{ProcessState, StatsTable, now_ms};
use crate::worker_process::StatsSlot;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variable a program finds its status descriptor in.
pub const STATUS_FD_VAR: &str = "GEARDRIVER_STATUS_FD";

/// Longest status line read; a longer one is cut.
const MAX_STATUS_LINE: usize = 1024;

/// What the keeper needs to know.
pub struct KeeperSpec {
    pub host_pid: u32,
    /// The pool's function names, in the order the stats slot counts them.
    pub functions: Vec<String>,
    pub stats: Option<StatsSlot>,
    pub shutdown_timeout: Duration,
    /// max_lifetime with the host's splay: then the program is asked to stop, to be replaced.
    pub max_lifetime: Option<Duration>,
    pub argv: Vec<String>,
}

/// One status line from the program.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// `idle`: registered, waiting for a job.
    Idle,
    /// `busy FUNCTION` (or `busy` when the pool has one function): took a job.
    Busy(Option<String>),
    /// `done`: the job succeeded.
    Done,
    /// `failed MESSAGE`: the job failed.
    Failed(String),
    /// `state C`: the job in hand shows `C` in the scoreboard (see
    /// [`crate::stats::CustomState`]); `state` alone goes back to `B`. The text after the
    /// word, to be checked.
    State(String),
    /// `unserved FUNCTION WHY`: the program serves its other functions, not this one (a
    /// worker file that does not load): the function's last error, so that `status` shows it.
    Unserved(String, String),
}

impl Status {
    pub fn parse(line: &str) -> Option<Status> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "idle" => Some(Status::Idle),
            "busy" => Some(Status::Busy((!rest.is_empty()).then(|| rest.to_string()))),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed(rest.to_string())),
            "state" => Some(Status::State(rest.to_string())),
            "unserved" => {
                let (function, why) = rest.split_once(' ').unwrap_or((rest, ""));
                (!function.is_empty())
                    .then(|| Status::Unserved(function.to_string(), why.trim().to_string()))
            }
            _ => None,
        }
    }
}

/// Runs the program until it exits; returns its exit status, for the keeper to exit with.
pub fn run(spec: KeeperSpec) -> Result<ExitStatus, String> {
    // Registered before the program starts, so that no signal is missed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGCHLD,
    ])
    .map_err(|e| format!("cannot handle signals: {e}"))?;
    let signals_handle = signals.handle();
    // SIGHUP and SIGUSR1 are the host's (reload, reopen the log): `killall -HUP geardriver`
    // must not end a program. (A handler, not SIG_IGN, so the program gets the defaults.)
    for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGUSR1] {
        let _ = signal_hook::flag::register(signal, Arc::new(AtomicBool::new(false)));
    }
    // Set by the signal handler itself when a stop signal arrives (not when the loop below
    // gets to it, which on a loaded machine can take longer than the host-gone check
    // waits), so that the program hears of a stop once.
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stopping.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let mut passed_on = false;
    let ask_to_stop = {
        let stopping = stopping.clone();
        move || {
            if !stopping.load(Ordering::Relaxed) {
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
            }
        }
    };
    // Gone, the host is as good as a SIGTERM. The parent-death signal normally is that TERM
    // already (and it may still be on its way to the loop below): only if none came within a
    // moment is one sent, so that the program hears of the stop once.
    let on_host_gone = {
        let ask_to_stop = ask_to_stop.clone();
        move || {
            let _ = std::thread::Builder::new().spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                ask_to_stop();
            });
        }
    };
    if !crate::process_group::watch_host(spec.host_pid, spec.shutdown_timeout, on_host_gone) {
        return Err("the host that started this program is gone".into());
    }
    let table = match &spec.stats {
        Some(slot) => {
            let table = StatsTable::attach_inherited(slot.fd).map_err(|e| e.to_string())?;
            table
                .writer(slot.slot)
                .map_err(|e| e.to_string())?
                .assign(std::process::id(), now_ms());
            let stats = Arc::new((Arc::new(table), slot.slot));
            let pool = std::env::var(crate::driver::PROGRAM_JOB_VAR)
                .unwrap_or_else(|_| spec.functions.join(","));
            crate::title::keep(stats.clone(), pool, spec.functions.clone());
            Some(stats)
        }
        None => None,
    };
    let (status_read, status_write) =
        nix::unistd::pipe().map_err(|e| format!("cannot make the status pipe: {e}"))?;
    nix::fcntl::fcntl(
        &status_read,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("cannot make the status pipe: {e}"))?;
    // The program's output goes through the keeper, which always reads it: a program whose
    // host is gone (and nobody reads the keeper's own output) can still print while it
    // finishes its job, instead of dying of SIGPIPE.
    let mut child = Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .env(STATUS_FD_VAR, status_write.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", spec.argv[0]))?;
    drop(status_write);
    // Each relay holds a sender until its pipe closes: all gone = all output passed on.
    let (relayed_tx, relayed) = std::sync::mpsc::channel::<std::convert::Infallible>();
    if let Some(out) = child.stdout.take() {
        relay(out, std::io::stdout, relayed_tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        relay(err, std::io::stderr, relayed_tx);
    }
    if let Some(lifetime) = spec.max_lifetime {
        let ask_to_stop = ask_to_stop.clone();
        let _ = std::thread::Builder::new()
            .name("lifetime".into())
            .spawn(move || {
                std::thread::sleep(lifetime);
                tracing::info!("max_lifetime reached; asking the program to stop, to be replaced");
                ask_to_stop();
            });
    }
    let with_slot = {
        let table = table.clone();
        move |f: &dyn Fn(&crate::stats::SlotWriter<'_>)| {
            if let Some((table, index)) = table.as_deref() {
                if let Ok(writer) = table.writer(*index) {
                    f(&writer);
                }
            }
        }
    };
    with_slot(&|w| w.running_unreported(now_ms()));
    {
        let with_slot = with_slot.clone();
        let functions = spec.functions.clone();
        std::thread::Builder::new()
            .name("status".into())
            .spawn(move || read_status(std::fs::File::from(status_read), &functions, with_slot))
            .map_err(|e| format!("cannot start the status reader: {e}"))?;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let mut status = None;
    for signal in signals.forever() {
        match signal {
            signal_hook::consts::SIGCHLD => {
                if let Ok(Some(exited)) = child.try_wait() {
                    status = Some(exited);
                    break;
                }
            }
            // The first stop is passed on; a second (the parent-death signal after the
            // host's own TERM) would read as "quit now" to many programs.
            _ if passed_on => {}
            _ => {
                passed_on = true;
                with_slot(&|w| w.set_state(ProcessState::Stopping, now_ms()));
                let signal = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
                let _ = kill(pid, signal);
            }
        }
    }
    signals_handle.close();
    let status = match status {
        Some(status) => status,
        None => child.wait().map_err(|e| e.to_string())?,
    };
    // What the program left behind goes with it.
    crate::process_group::kill_rest();
    // Its last lines (what a crash says) may still be in its pipes: the relays get a moment
    // to pass them on, so that the host logs and keeps them. Only a moment: a helper that
    // left the group may hold a pipe open forever. (The status thread is not waited for.)
    let _ = relayed.recv_timeout(RELAY_DRAIN);
    Ok(status)
}

/// How long the keeper waits, once its program has exited, for the program's last output
/// to be relayed.
const RELAY_DRAIN: Duration = Duration::from_secs(1);

/// Copies the program's output to the keeper's own, for as long as the program writes;
/// what cannot be written (nobody reads: the host is gone) is dropped. `done` is dropped
/// when the pipe closes.
fn relay<W: Write + 'static>(
    mut from: impl Read + Send + 'static,
    to: fn() -> W,
    done: std::sync::mpsc::Sender<std::convert::Infallible>,
) {
    let _ = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let _done = done;
            let mut buf = [0u8; 8192];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut out = to();
                        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                    }
                }
            }
        });
}

/// Applies the program's status lines to its stats slot until the pipe closes.
fn read_status(
    pipe: std::fs::File,
    functions: &[String],
    with_slot: impl Fn(&dyn Fn(&crate::stats::SlotWriter<'_>)),
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut warned = false;
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STATUS_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() >= MAX_STATUS_LINE {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
        }
        let text = String::from_utf8_lossy(&line);
        let now = now_ms();
        match Status::parse(&text) {
            Some(Status::Idle) => with_slot(&|w| w.set_state(ProcessState::Idle, now)),
            Some(Status::Busy(function)) => {
                let index = match function {
                    None => Some(0),
                    Some(name) => functions.iter().position(|f| *f == name),
                };
                match index {
                    Some(index) => with_slot(&|w| w.job_started(index as u32, now, "")),
                    None if warned => {}
                    None => {
                        warned = true;
                        tracing::warn!(
                            "{STATUS_FD_VAR}: busy with {function:?}, which is not one of this job's functions {functions:?} (said once)",
                            function = text.trim_end().trim_start_matches("busy ")
                        )
                    }
                }
            }
            Some(Status::Done) => with_slot(&|w| w.job_finished(now, None)),
            Some(Status::Unserved(function, why)) => {
                if let Some(index) = functions.iter().position(|f| *f == function) {
                    let message = format!("not served: {why}");
                    with_slot(&|w| w.record_error(Some(index as u32), now, &message));
                }
            }
            Some(Status::Failed(message)) => {
                let message = if message.is_empty() {
                    "the program reported a failed job".to_string()
                } else {
                    message
                };
                with_slot(&|w| w.job_finished(now, Some(&message)))
            }
            Some(Status::State(letter)) => match custom_state(&letter) {
                Ok(state) => with_slot(&|w| {
                    w.set_custom_state(state);
                }),
                Err(why) if !warned => {
                    warned = true;
                    tracing::warn!(
                        "{STATUS_FD_VAR}: ignoring {:?}: {why} (said once)",
                        text.trim_end()
                    );
                }
                Err(_) => {}
            },
            None if !warned => {
                warned = true;
                tracing::warn!(
                    "{STATUS_FD_VAR}: ignoring {:?}; a status line is `idle`, `busy FUNCTION`, `done`, `failed MESSAGE`, `state LETTER` or `unserved FUNCTION WHY` (said once)",
                    text.trim_end()
                );
            }
            None => {}
        }
    }
}

/// The custom state a `state` line asks for: one letter, or none (back to `B`).
fn custom_state(text: &str) -> Result<Option<crate::stats::CustomState>, String> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(letter), None) => crate::stats::CustomState::try_from(letter)
            .map(Some)
            .map_err(|e| e.to_string()),
        _ => Err(format!("a state is one character, not {text:?}")),
    }
}

/// Exits the way the program did: with its code, or killed by its signal.
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(signal) = status.signal() {
        let _ = signal_hook::low_level::emulate_default_handler(signal);
        std::process::exit(128 + signal);
    }
    std::process::exit(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(Status::parse("idle\n"), Some(Status::Idle));
        assert_eq!(
            Status::parse("busy resize\n"),
            Some(Status::Busy(Some("resize".into())))
        );
        assert_eq!(Status::parse("busy"), Some(Status::Busy(None)));
        assert_eq!(Status::parse("done\r\n"), Some(Status::Done));
        assert_eq!(
            Status::parse("unserved report report.php: it throws when loaded\n"),
            Some(Status::Unserved(
                "report".into(),
                "report.php: it throws when loaded".into()
            ))
        );
        assert_eq!(Status::parse("unserved"), None);
        assert_eq!(
            Status::parse("failed no such image\n"),
            Some(Status::Failed("no such image".into()))
        );
        assert_eq!(Status::parse("state C\n"), Some(Status::State("C".into())));
        assert_eq!(Status::parse("state\n"), Some(Status::State("".into())));
        assert_eq!(Status::parse("BUSY x"), None);
        assert_eq!(Status::parse(""), None);
    }

    #[test]
    fn state_lines_take_one_letter_the_scoreboard_does_not_use() {
        let letter = |t: &str| custom_state(t).map(|s| s.map(|s| s.letter()));
        assert_eq!(letter("C"), Ok(Some('C')));
        assert_eq!(letter(""), Ok(None));
        assert!(
            letter("B")
                .unwrap_err()
                .contains("scoreboard's own letters")
        );
        assert!(letter("é").unwrap_err().contains("printable ASCII"));
        assert!(letter("CD").unwrap_err().contains("one character"));
    }
}

//! What a worker process does about the processes it started: it leads its own process
//! group (the host starts it so), and whatever it leaves in that group when it ends goes
//! with it. The host cannot do this for a process it did not outlive, so each process does
//! it itself, and also when the host is gone: it finishes its job for at most
//! `shutdown_timeout`, then ends its whole group.

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getpgrp, getpid, getppid};
use std::time::Duration;

/// How often a process checks that its host is still its parent (the parent-death signal
/// normally says so at once).
const PARENT_POLL: Duration = Duration::from_millis(500);

/// SIGKILLs every other process of this process's group, when this process leads it.
pub fn kill_rest() {
    let (group, me) = (getpgrp(), getpid());
    if group != me {
        return; // not a group leader (run by hand): the group is not ours to clean
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|field| field.parse::<i32>().ok());
        if pgrp == Some(group.as_raw()) && pid != me.as_raw() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Arms the parent-death signal (SIGTERM, which survives exec) and starts a thread that
/// notices the host is gone even if that signal was missed (the host died before it was
/// armed). When the host is gone, `on_gone` runs once; then, `grace` later, the whole
/// process group is SIGKILLed, this process included. Returns false when the host was
/// already gone.
pub fn watch_host(host: u32, grace: Duration, on_gone: impl FnOnce() + Send + 'static) -> bool {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if getppid().as_raw() as u32 != host {
        return false;
    }
    let started = std::thread::Builder::new()
        .name("host-watch".into())
        .spawn(move || {
            while getppid().as_raw() as u32 == host {
                std::thread::sleep(PARENT_POLL);
            }
            tracing::warn!(
                "the host is gone; finishing the job in hand for at most {}s",
                grace.as_secs_f64()
            );
            on_gone();
            std::thread::sleep(grace);
            tracing::warn!(
                "the host is gone and shutdown_timeout has passed; ending the process group"
            );
            kill_rest();
            let _ = kill(getpid(), Signal::SIGKILL);
        });
    if started.is_err() {
        tracing::warn!("cannot start the thread that watches the host");
    }
    true
}

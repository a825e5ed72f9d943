//! Process titles: `ps` shows each worker process's job and state —
//! `geardriver: resize [busy 3s]`, `geardriver: mail [idle 40s]` — as Gearman::Driver's
//! `process_name` does. A thread of the worker process (or of a program's keeper) rewrites
//! the title from its own stats slot once a second, so the job path pays nothing for it.
//!
//! The title is the process's argument area (what `/proc/PID/cmdline` and `ps` read): its
//! bounds come from `/proc/self/stat` and the text is written through `/proc/self/mem`, padded
//! with NULs to the area's end, so no unsafe code is needed. A title longer than the command
//! line the process started with is cut. The thread's name for `top` (`comm`, 15 bytes) is
//! set too. By then the process has read its arguments (`std::env::args` reads that memory).

use crate::stats::{ProcessState, StatsTable};
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

/// How often a title is brought up to date.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The process's argument area, to write a title into.
pub struct Title {
    memory: std::fs::File,
    start: u64,
    len: usize,
}

impl Title {
    /// This process's, or `None` when `/proc` does not allow it.
    pub fn own() -> Option<Title> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, arg_start
        // field 48 and arg_end field 49.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let start: u64 = fields.get(48 - 3)?.parse().ok()?;
        let end: u64 = fields.get(49 - 3)?.parse().ok()?;
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        if len < 2 {
            return None;
        }
        let memory = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")
            .ok()?;
        Some(Title { memory, start, len })
    }

    /// Bytes a title may have.
    pub fn room(&self) -> usize {
        self.len - 1
    }

    /// Shows `text` (cut to fit, at a character boundary) as the process's command line.
    pub fn set(&mut self, text: &str) {
        let mut end = text.len().min(self.len - 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut area = vec![0u8; self.len];
        area[..end].copy_from_slice(&text.as_bytes()[..end]);
        let written = self
            .memory
            .seek(SeekFrom::Start(self.start))
            .and_then(|_| self.memory.write_all(&area));
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot set the process title");
        }
    }
}

/// The longest of these that fits in `room` bytes: the full title, then without a group's
/// job name, then shorter still (`gd:`), else the shortest cut (found by a trial: a long job
/// name in a group lost the title's end, time and bracket included).
pub fn fitted(
    pool: &str,
    functions: &[String],
    slot: &crate::stats::SlotSnapshot,
    now_ms: i64,
    room: usize,
) -> String {
    let full = text(pool, functions, slot, now_ms);
    if full.len() <= room {
        return full;
    }
    let plain = text(pool, &[], slot, now_ms);
    if plain.len() <= room {
        return plain;
    }
    plain.replacen("geardriver: ", "gd:", 1)
}

/// The title for a process of `pool` in the state its slot shows.
pub fn text(
    pool: &str,
    functions: &[String],
    slot: &crate::stats::SlotSnapshot,
    now_ms: i64,
) -> String {
    let (state, since) = match slot.state {
        ProcessState::Busy => ("busy", slot.job_started_ms),
        ProcessState::Idle => ("idle", slot.idle_since_ms),
        ProcessState::Starting => ("starting", slot.started_ms),
        ProcessState::Stopping => ("stopping", slot.started_ms),
        ProcessState::Free => ("", slot.started_ms),
    };
    let what = match slot.function.and_then(|f| functions.get(f as usize)) {
        // A group's process says which of its jobs it runs.
        Some(function) if functions.len() > 1 => format!("{state} {function}"),
        _ => state.to_string(),
    };
    let seconds = (now_ms - since).max(0) / 1000;
    if slot.state == ProcessState::Stopping {
        format!("geardriver: {pool} [{what}]")
    } else {
        format!(
            "geardriver: {pool} [{what} {}]",
            crate::console::snapshot::short_duration(seconds)
        )
    }
}

/// Starts the thread that keeps this process's title (and `comm`) up to date from its slot.
pub fn keep(stats: Arc<(Arc<StatsTable>, usize)>, pool: String, functions: Vec<String>) {
    let Some(mut title) = Title::own() else {
        return;
    };
    // The kernel keeps 15 bytes: cut at a character boundary.
    let mut comm = format!("gd:{pool}");
    let mut end = comm.len().min(15);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    comm.truncate(end);
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(comm).unwrap_or_default());
    let _ = std::thread::Builder::new()
        .name("title".into())
        .spawn(move || {
            let (table, index) = &*stats;
            let pid = std::process::id();
            loop {
                if let Some(slot) = table.read(*index).filter(|s| s.pid == pid) {
                    let room = title.room();
                    title.set(&fitted(
                        &pool,
                        &functions,
                        &slot,
                        crate::stats::now_ms(),
                        room,
                    ));
                }
                std::thread::sleep(REFRESH);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SlotSnapshot;

    fn slot(state: ProcessState, function: Option<u32>) -> SlotSnapshot {
        SlotSnapshot {
            pid: 1,
            state,
            function,
            jobs_done: 0,
            jobs_failed: 0,
            started_ms: 1_000,
            job_started_ms: 4_000,
            idle_since_ms: 2_000,
            lastrun: 0,
            lastrun_function: None,
            lasterror: 0,
            lasterror_function: None,
            lasterror_msg: String::new(),
            reports: true,
            durations: Default::default(),
            handle: String::new(),
            custom_state: None,
            recent_runs: Vec::new(),
        }
    }

    #[test]
    fn titles_say_the_job_the_state_and_for_how_long() {
        let one = ["resize".to_string()];
        let group = ["mail".to_string(), "sms".to_string()];
        assert_eq!(
            text("resize", &one, &slot(ProcessState::Busy, Some(0)), 7_500),
            "geardriver: resize [busy 3s]"
        );
        assert_eq!(
            text("notify", &group, &slot(ProcessState::Busy, Some(1)), 7_500),
            "geardriver: notify [busy sms 3s]"
        );
        assert_eq!(
            text("resize", &one, &slot(ProcessState::Idle, None), 602_000),
            "geardriver: resize [idle 10m]"
        );
        assert_eq!(
            text("resize", &one, &slot(ProcessState::Stopping, None), 602_000),
            "geardriver: resize [stopping]"
        );
    }

    #[test]
    fn a_title_that_does_not_fit_loses_detail_not_its_end() {
        let group = [
            "send_notification_email_to_customer_now".to_string(),
            "x".to_string(),
        ];
        let busy = slot(ProcessState::Busy, Some(0));
        assert_eq!(
            fitted("h", &group, &busy, 7_500, 40),
            "geardriver: h [busy 3s]"
        );
        assert_eq!(
            fitted("notify", &group, &busy, 7_500, 20),
            "gd:notify [busy 3s]"
        );
        assert_eq!(
            fitted("h", &group, &busy, 7_500, 200),
            "geardriver: h [busy send_notification_email_to_customer_now 3s]"
        );
    }
}

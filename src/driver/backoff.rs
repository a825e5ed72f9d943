//! Crash-loop handling: a pool whose processes keep dying soon after they start is restarted
//! ever more slowly, and after [`GIVE_UP_AFTER`] such deaths in a row it is marked failed and
//! left alone until an operator resets it (reload, `set_processes`, `killall`).
//!
//! Like supervisord's BACKOFF → FATAL, but a death only counts when the process was not
//! asked to stop, failed (a non-zero status or a signal) and lived less than [`QUICK`]. The
//! supervisor also leaves out deaths by a SIGKILL it did not send (see `on_exit` there).

use std::time::{Duration, Instant};

/// A death sooner than this after the start counts towards a crash loop.
pub const QUICK: Duration = Duration::from_secs(5);
/// Quick deaths in a row before the pool is marked failed.
pub const GIVE_UP_AFTER: u32 = 5;
/// The longest wait, as a multiple of the first (`restart_delay`).
const MAX_DELAY_FACTOR: u32 = 20;

/// One pool's crash-loop state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashLoop {
    /// The wait after the first quick death (`restart_delay`).
    first_delay: Duration,
    quick_deaths: u32,
    retry_at: Option<Instant>,
    failed: Option<String>,
}

impl CrashLoop {
    pub fn new(first_delay: Duration) -> CrashLoop {
        CrashLoop {
            first_delay,
            quick_deaths: 0,
            retry_at: None,
            failed: None,
        }
    }

    /// A reload may change `restart_delay`; it applies from the next death.
    pub fn set_first_delay(&mut self, first_delay: Duration) {
        self.first_delay = first_delay;
    }

    /// Accounts for a process that exited. `detail` describes how, for the failure reason.
    pub fn on_exit(
        &mut self,
        lived: Duration,
        success: bool,
        requested: bool,
        now: Instant,
        detail: &str,
    ) {
        if requested || success {
            if lived >= QUICK {
                self.quick_deaths = 0;
            }
            return;
        }
        if lived >= QUICK {
            self.quick_deaths = 0;
            self.retry_at = None;
            return;
        }
        self.quick_deaths += 1;
        if self.quick_deaths >= GIVE_UP_AFTER {
            self.failed = Some(format!(
                "{} processes in a row died within {}s of starting; the last one {detail}",
                self.quick_deaths,
                QUICK.as_secs()
            ));
            self.retry_at = None;
        } else {
            self.retry_at = Some(now + delay(self.first_delay, self.quick_deaths));
        }
    }

    /// A process that has been running for [`QUICK`] proves the pool healthy again.
    pub fn on_survived(&mut self) {
        self.quick_deaths = 0;
    }

    /// Whether a process may be started now.
    pub fn may_start(&self, now: Instant) -> bool {
        self.failed.is_none() && self.retry_at.is_none_or(|at| now >= at)
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Forgets the history (an operator asked to try again).
    pub fn reset(&mut self) {
        *self = CrashLoop::new(self.first_delay);
    }
}

/// The wait before the next start after `n` quick deaths in a row: with the default `first`
/// of 0.5 s, 0.5 s, 1 s, 2 s, 4 s …, at most 20 times `first` (10 s).
pub fn delay(first: Duration, n: u32) -> Duration {
    first
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(first.saturating_mul(MAX_DELAY_FACTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_up_to_a_cap() {
        let first = Duration::from_millis(500);
        let delays: Vec<u128> = (1..=7).map(|n| delay(first, n).as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn quick_deaths_back_off_then_fail() {
        let t0 = Instant::now();
        let mut c = CrashLoop::new(Duration::from_millis(500));
        assert!(c.may_start(t0));
        c.on_exit(SEC, false, false, t0, "exited with status 1");
        assert!(!c.may_start(t0));
        assert!(
            c.may_start(t0 + Duration::from_millis(500)),
            "replaced within a second"
        );
        for i in 2..GIVE_UP_AFTER {
            c.on_exit(SEC, false, false, t0, "exited with status 1");
            assert!(c.failed().is_none(), "death {i}");
        }
        c.on_exit(SEC, false, false, t0, "exited with status 1");
        let reason = c.failed().expect("marked failed");
        assert!(reason.contains("5 processes in a row"), "{reason}");
        assert!(reason.contains("exited with status 1"), "{reason}");
        assert!(!c.may_start(t0 + SEC * 3600), "no restarts until reset");
        c.reset();
        assert!(c.may_start(t0));
    }

    #[test]
    fn what_does_not_count() {
        let t0 = Instant::now();
        let mut c = CrashLoop::new(Duration::from_millis(500));
        c.on_exit(SEC, false, true, t0, "killed");
        c.on_exit(SEC, true, false, t0, "exited with status 0");
        assert!(
            c.may_start(t0),
            "stops we asked for and clean exits are not crashes"
        );
        for _ in 0..4 {
            c.on_exit(SEC, false, false, t0, "x");
        }
        c.on_exit(SEC * 6, false, false, t0, "x");
        assert!(
            c.may_start(t0),
            "a process that lived long resets the count"
        );
        for _ in 0..4 {
            c.on_exit(SEC, false, false, t0, "x");
        }
        assert!(c.failed().is_none());
        c.on_survived();
        c.on_exit(SEC, false, false, t0, "x");
        assert!(
            c.failed().is_none(),
            "a survivor in between resets the count"
        );
    }
}

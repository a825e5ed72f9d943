//! The watchdog: a thread that fails a job whose deadline passed while the job blocked the
//! worker's runtime (a plugin stuck in a loop), then ends the process.

use super::{EXIT_STUCK, with_slot};
use crate::stats;
use std::sync::Arc;
use std::time::Duration;

/// Fails a job whose deadline passed while the runtime was stuck in it, and exits.
pub(super) struct Watchdog {
    armed: std::sync::Mutex<Option<Armed>>,
    wake: std::sync::Condvar,
    stats: Option<super::Slot>,
}

struct Armed {
    due: std::time::Instant,
    abort: crate::gearman::JobAbort,
    message: String,
}

/// Disarms the watchdog when the job ends, however it ends.
pub(super) struct ArmedGuard<'a>(&'a Watchdog);

impl Drop for ArmedGuard<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

impl Watchdog {
    pub(super) fn start(stats: Option<super::Slot>) -> std::io::Result<Arc<Watchdog>> {
        let watchdog = Arc::new(Watchdog {
            armed: std::sync::Mutex::new(None),
            wake: std::sync::Condvar::new(),
            stats,
        });
        let watching = watchdog.clone();
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watching.watch())?;
        Ok(watchdog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Armed>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn arm(
        &self,
        after: Duration,
        abort: crate::gearman::JobAbort,
        message: &str,
    ) -> ArmedGuard<'_> {
        *self.lock() = Some(Armed {
            due: std::time::Instant::now() + after,
            abort,
            message: message.to_string(),
        });
        self.wake.notify_one();
        ArmedGuard(self)
    }

    fn watch(&self) {
        let mut armed = self.lock();
        loop {
            let now = std::time::Instant::now();
            match armed.as_ref().map(|a| a.due) {
                None => armed = self.wake.wait(armed).unwrap_or_else(|p| p.into_inner()),
                Some(due) if due > now => {
                    armed = self
                        .wake
                        .wait_timeout(armed, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(_) => {
                    let stuck = armed.take().expect("armed");
                    // The runtime is inside the job, so nothing else writes the slot or the
                    // connection now.
                    with_slot(self.stats.as_deref(), |w| {
                        w.job_finished(stats::now_ms(), Some(&stuck.message))
                    });
                    let told = stuck.abort.fail_now(stuck.message.as_bytes());
                    tracing::error!(
                        told_the_job_server = told.is_ok(),
                        "{}; the job does not yield, so its process exits",
                        stuck.message
                    );
                    // std's exit only try-locks stdout, so a stuck thread holding it cannot
                    // hang the exit.
                    std::process::exit(EXIT_STUCK);
                }
            }
        }
    }
}

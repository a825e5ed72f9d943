//! The host's stop: every process is asked to finish its job and exit; what is left after
//! `shutdown_timeout` is killed with its group.

use super::{KILL_GRACE, Supervisor};
use crate::driver::{ControlError, Event};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

impl Supervisor {
    /// SIGTERM to every process, SIGKILL to those still there after `shutdown_timeout`.
    pub(super) async fn stop_everything(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) {
        self.stopping = true;
        let all: Vec<(String, u32)> = self
            .pools
            .iter()
            .flat_map(|(name, pool)| pool.processes.keys().map(move |&pid| (name.clone(), pid)))
            .collect();
        if all.is_empty() {
            return;
        }
        tracing::info!(
            processes = all.len(),
            "stopping: every process finishes its job"
        );
        for (name, pid) in &all {
            self.request_stop(name, *pid);
        }
        let deadline = tokio::time::Instant::now() + self.config.driver.shutdown_timeout;
        self.drain(events, deadline).await;
        let left: Vec<u32> = self
            .pools
            .values()
            .flat_map(|p| p.processes.keys().copied())
            .collect();
        if left.is_empty() {
            return;
        }
        tracing::warn!(
            processes = left.len(),
            "still running after shutdown_timeout; killing them"
        );
        for pid in left {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        self.drain(events, tokio::time::Instant::now() + KILL_GRACE)
            .await;
    }

    async fn drain(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        deadline: tokio::time::Instant,
    ) {
        while self.pools.values().any(|p| !p.processes.is_empty()) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Exited { pool, pid, status })) => self.on_exit(&pool, pid, status),
                Ok(Some(Event::Control(control))) => control.refuse(ControlError::ShuttingDown),
                Ok(Some(Event::Queues(_))) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }
}

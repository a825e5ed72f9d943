//! The observer: every `interval` it asks every job server for `status`, sums the rows per
//! function (waiting = total − running) and sends the supervisor a queue report. A job
//! server that does not answer is retried at the next poll while the others keep being read;
//! the report then says it is incomplete, so nothing is scaled down on partial knowledge.

use crate::driver::{Event, QueueReport};
use crate::gearman::{AdminClient, ServerAddr};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest a poll of one job server may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

struct Watched {
    addr: ServerAddr,
    client: Option<AdminClient>,
    down: bool,
}

pub async fn run(
    servers: Vec<ServerAddr>,
    interval: Duration,
    events: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let mut watched: Vec<Watched> = servers
        .into_iter()
        .map(|addr| Watched {
            addr,
            client: None,
            down: false,
        })
        .collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let timeout = POLL_TIMEOUT.min(interval.max(Duration::from_millis(500)));
        let polls = watched.iter_mut().map(|w| poll(w, timeout));
        let results = futures_util::future::join_all(polls).await;
        let mut report = QueueReport {
            waiting: HashMap::new(),
            running: HashMap::new(),
            complete: true,
        };
        for rows in results {
            match rows {
                Some(rows) => {
                    for (function, waiting, running) in rows {
                        *report.running.entry(function.clone()).or_insert(0) += running;
                        *report.waiting.entry(function).or_insert(0) += waiting;
                    }
                }
                None => report.complete = false,
            }
        }
        if events.send(Event::Queues(report)).is_err() {
            return;
        }
    }
}

/// One server's rows as (function, waiting, running), or `None` when it could not be read.
async fn poll(w: &mut Watched, timeout: Duration) -> Option<Vec<(String, u64, u64)>> {
    if w.client.is_none() {
        match AdminClient::connect(&w.addr, timeout).await {
            Ok(client) => w.client = Some(client),
            Err(e) => {
                if !w.down {
                    tracing::error!(server = %w.addr, error = %e, "observer: cannot read the job server's queues; retrying every interval");
                    w.down = true;
                }
                return None;
            }
        }
    }
    let client = w.client.as_mut()?;
    match client.status().await {
        Ok(rows) => {
            if w.down {
                tracing::info!(server = %w.addr, "observer: job server reachable again");
                w.down = false;
            }
            Some(
                rows.into_iter()
                    .map(|r| (r.function.clone(), r.waiting(), r.running))
                    .collect(),
            )
        }
        Err(e) => {
            if !w.down {
                tracing::error!(server = %w.addr, error = %e, "observer: lost the job server; retrying every interval");
                w.down = true;
            }
            w.client = None;
            None
        }
    }
}

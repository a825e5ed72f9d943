//! The JSON API: the console's `status`, `scoreboard` and `output PID [LINES]` as
//! `GET /api/status`, `GET /api/processes` and `GET /api/processes/PID/output?lines=N`, and
//! its control commands as POSTs:
//!
//! - `POST /api/jobs/JOB/processes` `{"min": N, "max": M}` (either may be left out):
//!   `set_min_processes`, `set_max_processes` or `set_processes`;
//! - `POST /api/kill` `{"pids": [PID, …]}`; `POST /api/killall` `{"jobs": [JOB, …]}`
//!   (`["*"]` for all); `POST /api/reload`.
//!
//! A change answers `{"ok": true}`; an error answers `{"error": CODE, "message": TEXT}` with
//! the console's code (`invalid_job_name`, `invalid_value`, `invalid_config`, …) and an HTTP
//! status that says the same (404, 400, 422, 503).

use super::Context;
use crate::console::command::Reply;
use crate::console::commands::refused;
use crate::console::snapshot::Snapshot;
use crate::driver::ControlError;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct StatusReply {
    pub version: &'static str,
    pub uptime_seconds: f64,
    /// Milliseconds since the epoch, when this was read.
    pub now_ms: i64,
    pub jobs: Vec<JobStatus>,
    /// The built-in job server's functions (queued by priority: high, normal, low), when
    /// the host runs one.
    pub queues: Option<Vec<crate::gearman::server::FunctionFigures>>,
}

/// One job, as `status` shows it.
#[derive(Serialize)]
pub struct JobStatus {
    pub name: String,
    /// The group serving it, else the job itself.
    pub pool: String,
    pub min: u32,
    pub max: u32,
    pub processes: usize,
    /// Its pool's processes by state.
    pub idle: usize,
    pub busy: usize,
    pub starting: usize,
    pub stopping: usize,
    /// Jobs its pool's processes completed and failed, exited ones included.
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// Seconds since the epoch; 0 = never.
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
    /// Why the driver gave up on the job, when it did.
    pub failed: Option<String>,
    /// Its jobs waiting and running on the job servers at the observer's last report (null
    /// when none could be read).
    pub queued: Option<u64>,
    pub running: Option<u64>,
}

/// One process, as `scoreboard` shows it.
#[derive(Serialize)]
pub struct ProcessStatus {
    pub pid: u32,
    /// Which of the process's slots this is: a process with `concurrency` N has N entries,
    /// 0 to N - 1 (its memory and CPU on the first).
    pub slot: usize,
    pub pool: String,
    /// `starting`, `idle`, `busy` or `stopping`.
    pub state: &'static str,
    /// The one-letter state a busy process's job set for what it does (the scoreboard shows
    /// it in place of `B`); null when none.
    pub custom_state: Option<String>,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// When the current state began, milliseconds since the epoch.
    pub since_ms: i64,
    /// Resident memory with its children's and CPU share of one core over the last second
    /// (sampled every second; null until the first sample).
    pub rss_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
    /// The job it runs (busy only): its function, and its handle when the process says it.
    pub function: Option<String>,
    pub handle: Option<String>,
}

pub async fn status(State(context): State<Context>) -> Json<StatusReply> {
    let snapshot = Snapshot::collect(&context.host);
    let jobs = snapshot
        .jobs
        .iter()
        .map(|job| {
            let of_pool = || snapshot.processes.iter().filter(|p| p.job == job.pool);
            let count = |state: &str| of_pool().filter(|p| state_name(p.state) == state).count();
            let exited = snapshot
                .pools
                .iter()
                .find(|p| p.name == job.pool)
                .map(|p| p.exited.clone())
                .unwrap_or_default();
            JobStatus {
                name: job.name.clone(),
                pool: job.pool.clone(),
                min: job.min,
                max: job.max,
                processes: job.pids.len(),
                idle: count("idle"),
                busy: count("busy"),
                starting: count("starting"),
                stopping: count("stopping"),
                jobs_done: exited.jobs_done + of_pool().map(|p| p.jobs_done).sum::<u64>(),
                jobs_failed: exited.jobs_failed + of_pool().map(|p| p.jobs_failed).sum::<u64>(),
                lastrun: job.lastrun,
                lasterror: job.lasterror,
                lasterror_msg: job.lasterror_msg.clone(),
                failed: job.failed.clone(),
                queued: job.queue.map(|(w, _)| w),
                running: job.queue.map(|(_, r)| r),
            }
        })
        .collect();
    Json(StatusReply {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: context.started.elapsed().as_secs_f64(),
        now_ms: crate::stats::now_ms(),
        jobs,
        queues: context
            .server
            .as_ref()
            .map(|probe| probe.figures().functions),
    })
}

pub async fn processes(State(context): State<Context>) -> Json<Vec<ProcessStatus>> {
    let snapshot = Snapshot::collect(&context.host);
    Json(
        snapshot
            .processes
            .iter()
            .map(|p| ProcessStatus {
                pid: p.pid,
                slot: p.lane,
                pool: p.job.clone(),
                state: state_name(p.state),
                custom_state: p.shown_custom_state().map(|c| c.to_string()),
                jobs_done: p.jobs_done,
                jobs_failed: p.jobs_failed,
                since_ms: p.since_ms,
                rss_bytes: p.rss_bytes,
                cpu_percent: p.cpu_permille.map(|p| f64::from(p) / 10.0),
                function: p.function.clone(),
                handle: (!p.handle.is_empty()).then(|| p.handle.clone()),
            })
            .collect(),
    )
}

/// A process's recent output, as `output PID` shows it.
#[derive(Serialize)]
pub struct OutputReply {
    pub pid: u32,
    pub pool: String,
    /// Milliseconds since the epoch.
    pub started_ms: i64,
    /// When it exited and its status (`1`, `137 (killed by SIGKILL)`); null while it runs.
    pub exited_ms: Option<i64>,
    pub exit_status: Option<String>,
    /// The same as a number (128 + the signal for one killed by a signal), for scripts.
    pub exit_code: Option<u32>,
    /// Lines it wrote before these that are no longer kept.
    pub dropped: u64,
    /// Oldest first.
    pub lines: Vec<OutputLineReply>,
}

#[derive(Serialize)]
pub struct OutputLineReply {
    /// When the host read it, milliseconds since the epoch.
    pub time_ms: i64,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub text: String,
    /// The line was longer than 4096 bytes; the rest was dropped.
    pub cut: bool,
}

pub async fn output(
    State(context): State<Context>,
    Path(pid): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    use crate::console::commands::output::request;
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "the query string cannot be read; expected ?lines=N",
        );
    };
    if let Some(other) = query.keys().find(|k| *k != "lines") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            &format!("unknown query parameter {other:?} (there is only lines)"),
        );
    }
    match request(
        &context.host,
        Some(&pid),
        query.get("lines").map(String::as_str),
    ) {
        Ok(output) => Json(OutputReply {
            pid: output.pid,
            pool: output.pool,
            started_ms: output.started_ms,
            exited_ms: output.exited.as_ref().map(|(ms, _)| *ms),
            exit_code: output
                .exited
                .as_ref()
                .and_then(|(_, how)| how.split_whitespace().next()?.parse().ok()),
            exit_status: output.exited.map(|(_, how)| how),
            dropped: output.dropped,
            lines: output
                .lines
                .into_iter()
                .map(|line| OutputLineReply {
                    time_ms: line.time_ms,
                    stream: match line.stream {
                        crate::driver::output::Stream::Stdout => "stdout",
                        crate::driver::output::Stream::Stderr => "stderr",
                    },
                    text: line.text,
                    cut: line.cut,
                })
                .collect(),
        })
        .into_response(),
        Err(e) => {
            let status = match e.is_malformed() {
                true => StatusCode::BAD_REQUEST,
                false => StatusCode::NOT_FOUND,
            };
            error(status, "invalid_value", &e.to_string())
        }
    }
}

fn state_name(state: crate::stats::ProcessState) -> &'static str {
    use crate::stats::ProcessState::*;
    match state {
        Starting => "starting",
        Idle => "idle",
        Busy => "busy",
        Stopping => "stopping",
        Free => "free",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    min: Option<u32>,
    max: Option<u32>,
}

pub async fn set_processes(
    State(context): State<Context>,
    Path(job): Path<String>,
    body: Result<Json<Limits>, JsonRejection>,
) -> Response {
    let Json(limits) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_body(rejection, "{\"min\": N, \"max\": M}"),
    };
    if limits.min.is_none() && limits.max.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "give \"min\", \"max\" or both",
        );
    }
    done(context.host.set_limits(&job, limits.min, limits.max).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pids {
    pids: Vec<u32>,
}

pub async fn kill(
    State(context): State<Context>,
    body: Result<Json<Pids>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(Pids { pids })) => done(context.host.kill(pids).await),
        Err(rejection) => bad_body(rejection, "{\"pids\": [PID, ...]}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    jobs: Vec<String>,
}

pub async fn killall(
    State(context): State<Context>,
    body: Result<Json<Jobs>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(Jobs { jobs })) if jobs.is_empty() => error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "no jobs given (\"*\" stands for all)",
        ),
        Ok(Json(Jobs { jobs })) => done(context.host.kill_all(jobs).await),
        Err(rejection) => bad_body(rejection, "{\"jobs\": [JOB, ...]}"),
    }
}

pub async fn reload(State(context): State<Context>) -> Response {
    done(context.host.reload().await)
}

/// A change's answer.
fn done(result: Result<(), ControlError>) -> Response {
    match result {
        Ok(()) => Json(serde_json::json!({"ok": true})).into_response(),
        Err(e) => {
            let status = match &e {
                ControlError::NoSuchJob(_) => StatusCode::NOT_FOUND,
                ControlError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            match refused(e) {
                Reply::Error { code, text } => error(status, code, &text),
                _ => error(status, "refused", "refused"),
            }
        }
    }
}

fn bad_body(rejection: JsonRejection, expected: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        &format!("{}; expected a JSON body {expected}", rejection.body_text()),
    )
}

/// An error answer: `{"error": CODE, "message": TEXT}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

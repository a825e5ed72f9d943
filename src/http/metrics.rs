//! `/metrics`: the host in the Prometheus text format (version 0.0.4).
//!
//! Per pool (label `pool`: a job, or the group whose processes serve several jobs) its
//! processes by state, limits, jobs done and failed, restarts, whether the driver gave up on
//! it, its processes' resident memory and a histogram of how long its jobs took; per job
//! (label `function`, with its `pool`) when it last ran and last failed; per function on the
//! built-in job server (label `function`) its queue by priority, running jobs, workers,
//! submissions and outcomes; for the host its uptime, build and the job server's
//! connections.
//!
//! No label is called `job`: Prometheus sets that one itself on every scraped series.

use super::Context;
use crate::console::snapshot::{PoolView, ProcessView, Snapshot};
use crate::gearman::server::Figures;
use crate::stats::{DURATION_BOUNDS_MS, Durations, ProcessState};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;

pub async fn handler(State(context): State<Context>) -> impl IntoResponse {
    let snapshot = Snapshot::collect(&context.host);
    let figures = context.server.as_ref().map(|probe| probe.figures());
    let text = render(&Inputs {
        snapshot: &snapshot,
        server: figures.as_ref(),
        uptime_seconds: context.started.elapsed().as_secs_f64(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Everything one scrape shows.
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub server: Option<&'a Figures>,
    pub uptime_seconds: f64,
}

/// The metrics page.
pub fn render(inputs: &Inputs) -> String {
    let mut out = Page::default();
    out.family(
        "geardriver_build_info",
        "gauge",
        "Always 1; the labels say which geardriver this is.",
    );
    out.sample(
        "geardriver_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out.family(
        "geardriver_uptime_seconds",
        "gauge",
        "Seconds since the host started.",
    );
    out.sample("geardriver_uptime_seconds", &[], inputs.uptime_seconds);
    pools(&mut out, inputs);
    jobs(&mut out, inputs.snapshot);
    if let Some(server) = inputs.server {
        server_figures(&mut out, server);
    }
    out.text
}

fn pools(out: &mut Page, inputs: &Inputs) {
    let snapshot = inputs.snapshot;
    fn of<'a>(snapshot: &'a Snapshot, pool: &'a str) -> impl Iterator<Item = &'a ProcessView> {
        snapshot.processes.iter().filter(move |p| p.job == pool)
    }
    let of = |pool| of(snapshot, pool);
    out.family(
        "geardriver_processes",
        "gauge",
        "Worker processes of a pool, by state (with concurrency above 1: their slots, one per job a process runs at once).",
    );
    for pool in &snapshot.pools {
        for (state, name) in [
            (ProcessState::Starting, "starting"),
            (ProcessState::Idle, "idle"),
            (ProcessState::Busy, "busy"),
            (ProcessState::Stopping, "stopping"),
        ] {
            let n = of(&pool.name).filter(|p| p.state == state).count();
            out.sample(
                "geardriver_processes",
                &[("pool", &pool.name), ("state", name)],
                n as f64,
            );
        }
    }
    // Each pool's figure from the pool and its live processes.
    type Field = fn(&PoolView, &[&ProcessView]) -> f64;
    let per_pool: [(&str, &str, &str, Field); 8] = [
        (
            "geardriver_min_processes",
            "gauge",
            "The pool's min_processes.",
            |p, _| f64::from(p.min),
        ),
        (
            "geardriver_max_processes",
            "gauge",
            "The pool's max_processes.",
            |p, _| f64::from(p.max),
        ),
        (
            "geardriver_pool_failed",
            "gauge",
            "1 when the driver gave up restarting the pool (a crash loop), until it is reset.",
            |p, _| f64::from(u8::from(p.failed.is_some())),
        ),
        (
            "geardriver_restarts_total",
            "counter",
            "Processes of the pool that ended without being asked by the host or an operator (crashed, or exited on their own).",
            |p, _| p.exited.restarts as f64,
        ),
        (
            "geardriver_memory_recycles_total",
            "counter",
            "Processes of the pool replaced after their job for passing max_memory.",
            |p, _| p.exited.memory_recycles as f64,
        ),
        (
            "geardriver_jobs_done_total",
            "counter",
            "Jobs the pool's processes completed.",
            |p, live| (p.exited.jobs_done + live.iter().map(|l| l.jobs_done).sum::<u64>()) as f64,
        ),
        (
            "geardriver_jobs_failed_total",
            "counter",
            "Jobs the pool's processes failed.",
            |p, live| {
                (p.exited.jobs_failed + live.iter().map(|l| l.jobs_failed).sum::<u64>()) as f64
            },
        ),
        (
            "geardriver_resident_memory_bytes",
            "gauge",
            "Resident memory (RSS) of the pool's live processes and their children together, sampled every second.",
            |_, live| live.iter().filter_map(|l| l.rss_bytes).sum::<u64>() as f64,
        ),
    ];
    for (name, kind, help, value) in per_pool {
        out.family(name, kind, help);
        for pool in &snapshot.pools {
            let live: Vec<&ProcessView> = of(&pool.name).collect();
            out.sample(name, &[("pool", &pool.name)], value(pool, &live));
        }
    }
    out.family(
        "geardriver_job_duration_seconds",
        "histogram",
        "How long the pool's jobs took, completed or failed (millisecond resolution).",
    );
    for pool in &snapshot.pools {
        let mut durations = pool.exited.durations.clone();
        for process in of(&pool.name) {
            durations.add(&process.durations);
        }
        histogram(
            out,
            "geardriver_job_duration_seconds",
            &pool.name,
            &durations,
        );
    }
}

fn histogram(out: &mut Page, name: &str, pool: &str, durations: &Durations) {
    let mut cumulative = 0;
    for (bound, count) in DURATION_BOUNDS_MS.iter().zip(&durations.buckets) {
        cumulative += count;
        let le = (*bound as f64 / 1000.0).to_string();
        out.sample(
            &format!("{name}_bucket"),
            &[("pool", pool), ("le", &le)],
            cumulative as f64,
        );
    }
    out.sample(
        &format!("{name}_bucket"),
        &[("pool", pool), ("le", "+Inf")],
        durations.count() as f64,
    );
    out.sample(
        &format!("{name}_sum"),
        &[("pool", pool)],
        durations.sum_ms as f64 / 1000.0,
    );
    out.sample(
        &format!("{name}_count"),
        &[("pool", pool)],
        durations.count() as f64,
    );
}

fn jobs(out: &mut Page, snapshot: &Snapshot) {
    for (name, help, value) in [
        (
            "geardriver_job_last_run_timestamp_seconds",
            "When a job of the function last ended (0 = never), seconds since the epoch.",
            (|j| j.lastrun) as fn(&crate::console::snapshot::JobView) -> i64,
        ),
        (
            "geardriver_job_last_error_timestamp_seconds",
            "When a job of the function last failed (0 = never), seconds since the epoch.",
            |j| j.lasterror,
        ),
    ] {
        out.family(name, "gauge", help);
        for job in &snapshot.jobs {
            out.sample(
                name,
                &[("function", &job.name), ("pool", &job.pool)],
                value(job) as f64,
            );
        }
    }
}

fn server_figures(out: &mut Page, server: &Figures) {
    out.family(
        "geardriver_server_connections",
        "gauge",
        "Connections open to the built-in job server (clients, workers, admin).",
    );
    out.sample(
        "geardriver_server_connections",
        &[],
        server.connections as f64,
    );
    out.family(
        "geardriver_server_queued_jobs",
        "gauge",
        "Jobs queued on the built-in job server, by priority (scheduled ones: priority=\"scheduled\").",
    );
    for f in &server.functions {
        for (priority, n) in ["high", "normal", "low"]
            .into_iter()
            .zip(f.queued)
            .chain([("scheduled", f.scheduled)])
        {
            out.sample(
                "geardriver_server_queued_jobs",
                &[("function", &f.name), ("priority", priority)],
                n as f64,
            );
        }
    }
    type Field = fn(&crate::gearman::server::FunctionFigures) -> f64;
    let per_function: [(&str, &str, &str, Field); 5] = [
        (
            "geardriver_server_running_jobs",
            "gauge",
            "Jobs of the function a worker holds.",
            |f| f.running as f64,
        ),
        (
            "geardriver_server_workers",
            "gauge",
            "Worker connections that can do the function.",
            |f| f.workers as f64,
        ),
        (
            "geardriver_server_submitted_jobs_total",
            "counter",
            "Jobs submitted for the function (a submission merged into a job with the same unique id is not counted).",
            |f| f.submitted as f64,
        ),
        (
            "geardriver_server_completed_jobs_total",
            "counter",
            "Jobs of the function that completed (WORK_COMPLETE).",
            |f| f.completed as f64,
        ),
        (
            "geardriver_server_failed_jobs_total",
            "counter",
            "Jobs of the function that failed (WORK_FAIL, WORK_EXCEPTION, or failed by the server).",
            |f| f.failed as f64,
        ),
    ];
    for (name, kind, help, value) in per_function {
        out.family(name, kind, help);
        for f in &server.functions {
            out.sample(name, &[("function", &f.name)], value(f));
        }
    }
}

/// The page being written.
#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::snapshot::{JobView, PoolView, ProcessView};

    #[test]
    fn labels_are_escaped_and_histograms_cumulative() {
        let mut durations = Durations::default();
        durations.buckets[0] = 2; // <= 5 ms
        durations.buckets[7] = 1; // <= 1 s
        durations.sum_ms = 1_004;
        let snapshot = Snapshot {
            jobs: vec![JobView {
                name: "we\"ird\\name\n".into(),
                pool: "p".into(),
                lastrun: 1_700_000_000,
                ..Default::default()
            }],
            processes: vec![ProcessView {
                pid: 42,
                job: "p".into(),
                state: ProcessState::Busy,
                jobs_done: 3,
                jobs_failed: 1,
                durations,
                since_ms: 0,
                rss_bytes: Some(1_048_576),
                ..Default::default()
            }],
            pools: vec![PoolView {
                name: "p".into(),
                min: 1,
                max: 4,
                ..Default::default()
            }],
        };
        let text = render(&Inputs {
            snapshot: &snapshot,
            server: None,
            uptime_seconds: 2.5,
        });
        for line in [
            r#"geardriver_job_last_run_timestamp_seconds{function="we\"ird\\name\n",pool="p"} 1700000000"#,
            r#"geardriver_processes{pool="p",state="busy"} 1"#,
            r#"geardriver_processes{pool="p",state="idle"} 0"#,
            r#"geardriver_jobs_done_total{pool="p"} 3"#,
            r#"geardriver_jobs_failed_total{pool="p"} 1"#,
            r#"geardriver_resident_memory_bytes{pool="p"} 1048576"#,
            r#"geardriver_job_duration_seconds_bucket{pool="p",le="0.005"} 2"#,
            r#"geardriver_job_duration_seconds_bucket{pool="p",le="0.5"} 2"#,
            r#"geardriver_job_duration_seconds_bucket{pool="p",le="1"} 3"#,
            r#"geardriver_job_duration_seconds_bucket{pool="p",le="+Inf"} 3"#,
            r#"geardriver_job_duration_seconds_sum{pool="p"} 1.004"#,
            r#"geardriver_job_duration_seconds_count{pool="p"} 3"#,
            "geardriver_uptime_seconds 2.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in\n{text}");
        }
        assert!(!text.contains("geardriver_server_"), "no built-in server");
    }
}

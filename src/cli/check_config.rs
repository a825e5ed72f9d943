//! `geardriver check-config`: loads the config as the host would and prints what it
//! resolved to (every default filled in), or the first error, naming the key; notes what
//! loads but will not do what it seems to.

use super::Outcome;
use crate::config::{Config, JobConfig, LogFormat, LogTarget, WorkerKind};
use crate::plugin::Registry;
use std::path::PathBuf;
use std::time::Duration;

pub fn run(path: Option<PathBuf>, registry: &Registry) -> Outcome {
    let path = Config::resolve_path(path.as_deref());
    match Config::load(&path, registry) {
        Ok(config) => {
            super::out(&render(&config));
            for note in notes(&config) {
                eprintln!("note: {note}");
            }
            Outcome::Success
        }
        Err(e) => Outcome::Usage(e.to_string()),
    }
}

/// Settings that load but do not do what they may seem to.
fn notes(config: &Config) -> Vec<String> {
    let mut notes = config.notes.clone();
    if let Some(dir) = &config.driver.stats_dir {
        notes.push(format!(
            "stats_dir = {:?} is ignored: the stats table is an anonymous memory file (memfd)",
            dir.display()
        ));
    }
    if config.server.enabled {
        let listen = config.server.listen;
        let served = config.driver.job_servers.iter().any(|s| {
            s.port == listen.port()
                && (listen.ip().is_unspecified()
                    || s.host == listen.ip().to_string()
                    || (s.host == "localhost" && listen.ip().is_loopback()))
        });
        if !served {
            notes.push(format!(
                "the built-in job server listens on {listen}, but job_servers does not name it: no worker here serves it"
            ));
        }
    }
    for job in &config.jobs {
        if job.watch && job.watched_paths().is_empty() {
            notes.push(format!(
                "job {:?}: watch = true, but its command line names no file that exists here (a path inside `sh -c` is not seen): nothing is watched",
                job.name
            ));
        }
        let Some(argv) = job.argv() else { continue };
        if let Some(missing) = missing_program(&argv) {
            notes.push(format!("job {:?}: {missing}", job.name));
        }
        for arg in argv.iter().skip(1).filter(|a| a.starts_with('/')) {
            if !std::path::Path::new(arg).exists() {
                notes.push(format!(
                    "job {:?}: its command line names {arg}, which does not exist here",
                    job.name
                ));
            }
        }
    }
    notes
}

/// Why the program of a command line cannot be run here, if it cannot: a path that is not
/// there, or a name no directory of `PATH` holds.
fn missing_program(argv: &[String]) -> Option<String> {
    let program = argv.first()?;
    if program.contains('/') {
        return (!std::path::Path::new(program).exists())
            .then(|| format!("its program {program} does not exist here"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    (!found).then(|| format!("its program {program:?} is in no directory of PATH here"))
}

fn secs(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) => format!("{}s", d.as_secs_f64()),
    }
}

/// The resolved configuration as `check-config` prints it.
fn render(config: &Config) -> String {
    let mut out = String::new();
    let d = &config.driver;
    let servers: Vec<String> = d.job_servers.iter().map(ToString::to_string).collect();
    out += &format!("config           {}\n", config.path.display());
    out += &format!("job_servers      {}\n", servers.join(", "));
    out += &format!(
        "interval         {}\n",
        d.interval
            .map_or("off".into(), |i| format!("{}s", i.as_secs_f64()))
    );
    out += &format!("shutdown_timeout {}s\n", d.shutdown_timeout.as_secs_f64());
    out += &format!("restart_delay    {}s\n", d.restart_delay.as_secs_f64());
    out += &format!(
        "logfile          {}\n",
        match &d.logfile {
            LogTarget::Stderr => "stderr".to_string(),
            LogTarget::File(p) => p.display().to_string(),
        }
    );
    out += &format!("loglevel         {}\n", d.loglevel);
    out += &format!(
        "output_buffer    {}\n",
        match d.output_buffer {
            0 => "off".to_string(),
            n => format!("the last {n} lines of each process (console: output PID)"),
        }
    );
    if d.log_format == LogFormat::Json {
        out += "log_format       json\n";
    }
    if let Some(p) = &d.pidfile {
        out += &format!("pidfile          {}\n", p.display());
    }
    out += &format!(
        "console          {}{}\n",
        config
            .console
            .listen
            .map_or("off".into(), |a| a.to_string()),
        if config.console.secret.is_some() {
            " (secret set)"
        } else {
            ""
        }
    );
    out += &format!(
        "http             {}\n",
        match config.http.listen {
            None => "off".to_string(),
            Some(a) if config.console.secret.is_some() => {
                format!("{a} (/metrics, /api/..., page at /; bearer token: the console's secret)")
            }
            Some(a) => format!("{a} (/metrics, /api/..., page at /)"),
        }
    );
    out += &format!(
        "server           {}\n",
        if config.server.enabled {
            format!(
                "built-in on {}, job_retries {}, queue {}",
                config.server.listen,
                config.server.job_retries,
                match &config.server.queue {
                    Some(path) => format!(
                        "{} (sync {})",
                        path.display(),
                        config.server.queue_sync.as_str()
                    ),
                    None => "in memory only (background jobs are lost at a stop)".into(),
                }
            )
        } else {
            "off".into()
        }
    );
    for dir in &config.worker_dirs {
        out += &format!(
            "worker_dir       {} ({}{}): {}\n",
            dir.path.display(),
            dir.files,
            if dir.watch { ", watched" } else { "" },
            match dir.jobs.is_empty() {
                true => "no jobs".to_string(),
                false => dir.jobs.join(", "),
            }
        );
    }
    let header = [
        "job", "min", "max", "idle", "spare", "at_once", "decode", "encode", "timeout", "prefetch",
        "group", "max_jobs", "lifetime", "memory", "worker",
    ];
    let rows: Vec<[String; 15]> = config
        .jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.limits.min_processes.to_string(),
                j.limits.max_processes.to_string(),
                format!("{}s", j.limits.max_idle_time.as_secs_f64()),
                match j.limits.max_spare {
                    Some(most) => format!("{}-{most}", j.limits.min_spare),
                    None => j.limits.min_spare.to_string(),
                },
                j.limits.concurrency.to_string(),
                j.decode.clone(),
                j.encode.clone(),
                secs(j.timeout),
                match (&j.worker, j.prefetch) {
                    (WorkerKind::Program(_), _) => "-".into(),
                    // Several jobs at once already overlap the round trips.
                    (_, on) => if on && j.limits.concurrency == 1 {
                        "on"
                    } else {
                        "off"
                    }
                    .into(),
                },
                j.group.clone().unwrap_or_else(|| "-".into()),
                j.limits.max_jobs.map_or("-".into(), |n| n.to_string()),
                secs(j.limits.max_lifetime),
                j.limits
                    .max_memory
                    .map_or("-".into(), |b| format!("{:.0}M", b as f64 / 1048576.0)),
                worker(j),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    out.push('\n');
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s += cell;
            } else {
                s += &format!("{cell:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out += &line(header.to_vec());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// What runs the job, with its file in place of `{file}`, and whether it is watched.
fn worker(job: &JobConfig) -> String {
    let what = match (&job.worker, job.argv()) {
        (WorkerKind::Command(_), Some(argv)) => format!("command {}", argv.join(" ")),
        (WorkerKind::Program(_), Some(argv)) => format!("program {}", argv.join(" ")),
        (worker, _) => worker.to_string(),
    };
    let what = match &job.user {
        Some(user) => format!("{what} (as {})", user.spec),
        None => what,
    };
    match job.watch {
        true => format!("{what} (watched)"),
        false => what,
    }
}

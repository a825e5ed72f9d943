//! Validation: raw entries into [`super::Config`], every default applied and every rule
//! checked, errors naming the key and, for jobs, the job (or the group).

use super::limits::RawLimits;
use super::{
    Config, ConsoleConfig, DriverConfig, JobConfig, LogFormat, LogTarget, MAX_DURATION,
    MAX_PROCESSES, MIN_INTERVAL, RawConfig, RawJob, ServerConfig, WorkerKind, defaults,
};
use crate::gearman::ServerAddr;
use crate::plugin::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn seconds(key: &str, value: f64) -> Result<Duration, String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{key} must be a number of seconds >= 0, got {value}"
        ));
    }
    match Duration::try_from_secs_f64(value) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "{key} = {value} is more than the longest duration a setting takes, {} s (30 days)",
            MAX_DURATION.as_secs()
        )),
    }
}

/// Zero means "off".
pub(super) fn optional_seconds(key: &str, value: Option<f64>) -> Result<Option<Duration>, String> {
    Ok(match value {
        None => None,
        Some(v) => Some(seconds(key, v)?).filter(|d| !d.is_zero()),
    })
}

fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    let normalized = match value.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => value.to_string(),
    };
    normalized
        .parse()
        .map_err(|_| format!("{key} = {value:?} is not an address of the form IP:PORT"))
}

/// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a list of `target=level`
/// directives as `RUST_LOG` takes them.
fn check_loglevel(value: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = || {
        format!(
            "driver.loglevel = {value:?} is not one of {} (or target=level directives)",
            LEVELS.join(", ")
        )
    };
    for directive in value.split(',').map(str::trim) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad());
        }
    }
    tracing_subscriber::EnvFilter::try_new(value)
        .map(drop)
        .map_err(|_| bad())
}

pub(super) fn validate(raw: RawConfig, path: &Path, registry: &Registry) -> Result<Config, String> {
    let driver = raw.driver.unwrap_or_default();
    let server = raw.server.unwrap_or_default();
    let relative = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        match (p.is_relative(), path.parent()) {
            (true, Some(dir)) => dir.join(p),
            _ => p,
        }
    };
    let queue_sync = match server.queue_sync.as_deref() {
        None => Default::default(),
        Some(text) => crate::gearman::server::queue::Sync::parse(text).ok_or_else(|| {
            format!("server.queue_sync must be \"normal\" or \"full\", not {text:?}")
        })?,
    };
    let queue = server.queue.filter(|p| !p.is_empty()).map(relative);
    if queue.is_none() && queue_sync == crate::gearman::server::queue::Sync::Full {
        return Err(
            "server.queue_sync = \"full\" asks for background jobs kept through a power \
             loss, but server.queue names no file (memory only): set server.queue, or remove \
             queue_sync"
                .into(),
        );
    }
    let server_config = ServerConfig {
        enabled: server.enabled.unwrap_or(false),
        listen: socket_addr(
            "server.listen",
            server.listen.as_deref().unwrap_or(defaults::SERVER_LISTEN),
        )?,
        job_retries: server.job_retries.unwrap_or(defaults::JOB_RETRIES),
        queue,
        queue_sync,
    };
    let job_servers = match driver.job_servers {
        // With the built-in server on, workers use it unless told otherwise.
        None if server_config.enabled => vec![ServerAddr::new(
            server_config.listen.ip().to_string(),
            server_config.listen.port(),
        )],
        None => vec![ServerAddr::new("127.0.0.1", crate::gearman::DEFAULT_PORT)],
        Some(list) if list.is_empty() => {
            return Err("driver.job_servers is empty: give at least one HOST:PORT".into());
        }
        Some(list) => list
            .iter()
            .map(|s| {
                s.parse::<ServerAddr>()
                    .map_err(|e| format!("driver.job_servers: {e}"))
            })
            .collect::<Result<_, _>>()?,
    };
    let default_idle = seconds(
        "driver.max_idle_time",
        driver.max_idle_time.unwrap_or(defaults::MAX_IDLE_TIME_SECS),
    )?;
    let loglevel = driver.loglevel.unwrap_or_else(|| defaults::LOGLEVEL.into());
    check_loglevel(&loglevel)?;
    let driver_config = DriverConfig {
        job_servers,
        interval: match optional_seconds(
            "driver.interval",
            Some(driver.interval.unwrap_or(defaults::INTERVAL_SECS)),
        )? {
            Some(i) if i < MIN_INTERVAL => {
                return Err(format!(
                    "driver.interval = {} is below {} s, which would keep the host and the job servers busy polling (0 turns autoscaling off)",
                    i.as_secs_f64(),
                    MIN_INTERVAL.as_secs_f64()
                ));
            }
            interval => interval,
        },
        max_idle_time: default_idle,
        shutdown_timeout: seconds(
            "driver.shutdown_timeout",
            driver
                .shutdown_timeout
                .unwrap_or(defaults::SHUTDOWN_TIMEOUT_SECS),
        )?,
        restart_delay: match seconds(
            "driver.restart_delay",
            driver.restart_delay.unwrap_or(defaults::RESTART_DELAY_SECS),
        )? {
            d if d.is_zero() => return Err("driver.restart_delay must be more than 0 s".into()),
            d => d,
        },
        logfile: match driver.logfile.as_deref() {
            None | Some("-") | Some("") => LogTarget::Stderr,
            Some(p) => LogTarget::File(relative(p.to_string())),
        },
        loglevel,
        log_format: match driver.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(format!(
                    "driver.log_format = {other:?} is not \"text\" or \"json\""
                ));
            }
        },
        pidfile: driver.pidfile.filter(|p| !p.is_empty()).map(relative),
        stats_dir: driver.stats_dir.filter(|p| !p.is_empty()).map(relative),
        on_event: match driver.on_event {
            None => Vec::new(),
            Some(argv) if argv.is_empty() => Vec::new(),
            Some(argv) if argv[0].trim().is_empty() => {
                return Err(
                    "driver.on_event: the first element must name a program (or give [] for none)"
                        .into(),
                );
            }
            Some(argv) => argv,
        },
        output_buffer: match driver.output_buffer.unwrap_or(defaults::OUTPUT_BUFFER) as usize {
            n if n > crate::driver::output::MAX_LINES => {
                return Err(format!(
                    "driver.output_buffer = {n} is more than the {} lines of recent output a process may keep (0 turns it off)",
                    crate::driver::output::MAX_LINES
                ));
            }
            n => n,
        },
    };

    let console = raw.console.unwrap_or_default();
    let listen = match console.listen.as_deref() {
        None => Some(socket_addr("console.listen", defaults::CONSOLE_LISTEN)?),
        Some("") => None,
        Some(addr) => Some(socket_addr("console.listen", addr)?),
    };
    let secret = console.secret.filter(|s| !s.is_empty());
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && secret.is_none() {
            return Err(format!(
                "console.listen = {addr} is not a loopback address, so console.secret is required"
            ));
        }
    }

    let http_listen = match raw.http.unwrap_or_default().listen.as_deref() {
        None => Some(socket_addr("http.listen", defaults::HTTP_LISTEN)?),
        Some("") => None,
        Some(addr) => Some(socket_addr("http.listen", addr)?),
    };
    if let Some(addr) = http_listen {
        if !addr.ip().is_loopback() && secret.is_none() {
            return Err(format!(
                "http.listen = {addr} is not a loopback address, so console.secret is required \
                 (requests carry it as a bearer token)"
            ));
        }
        if Some(addr) == listen && addr.port() != 0 {
            return Err(format!(
                "http.listen and console.listen are both {addr}: give them different ports"
            ));
        }
    }

    let default_user = match driver.user.as_deref() {
        None | Some("") => None,
        Some(spec) => Some(super::user::resolve("driver", spec)?),
    };
    let raw_jobs = raw.jobs.unwrap_or_default();
    let mut jobs = Vec::with_capacity(raw_jobs.len());
    let mut names = BTreeSet::new();
    for (index, raw_job) in raw_jobs.iter().enumerate() {
        let mut job = validate_job(index, raw_job, default_idle, registry)?;
        // The host's default, unless the job gives its own ("" = the host's own account).
        job.user = match raw_job.user.as_deref() {
            None => default_user.clone(),
            Some("") => None,
            Some(spec) => Some(super::user::resolve(
                &label(index, raw_job, &job.name),
                spec,
            )?),
        };
        if !names.insert(job.name.clone()) {
            return Err(format!("jobs[{index}]: duplicate job name {:?}", job.name));
        }
        jobs.push(job);
    }
    check_groups(&raw_jobs, &jobs)?;
    apply_group_settings(&raw_jobs, &mut jobs, default_idle)?;
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    let config = Config {
        path: path.to_path_buf(),
        driver: driver_config,
        console: ConsoleConfig {
            listen,
            secret,
            idle_timeout: match seconds(
                "console.idle_timeout",
                console
                    .idle_timeout
                    .unwrap_or(defaults::CONSOLE_IDLE_TIMEOUT_SECS),
            )? {
                d if d.is_zero() => return Err("console.idle_timeout must be more than 0".into()),
                d => d,
            },
            auth_timeout: match seconds(
                "console.auth_timeout",
                console
                    .auth_timeout
                    .unwrap_or(defaults::CONSOLE_AUTH_TIMEOUT_SECS),
            )? {
                d if d.is_zero() => return Err("console.auth_timeout must be more than 0".into()),
                d => d,
            },
            max_connections: match console
                .max_connections
                .unwrap_or(defaults::CONSOLE_MAX_CONNECTIONS)
            {
                0 => return Err("console.max_connections must be at least 1".into()),
                n => n as usize,
            },
        },
        http: super::HttpConfig {
            listen: http_listen,
        },
        server: server_config,
        jobs,
        worker_dirs: Vec::new(),
        notes: Vec::new(),
    };
    let most: u64 = config.pools().iter().map(|p| p.limits.slots()).sum();
    if most > MAX_PROCESSES as u64 {
        return Err(format!(
            "the jobs' max_processes add up to {most}, more than the {MAX_PROCESSES} processes one \
             host can run (one stats slot each; a process with concurrency N counts N)"
        ));
    }
    Ok(config)
}

fn validate_job(
    index: usize,
    raw: &RawJob,
    default_idle: Duration,
    registry: &Registry,
) -> Result<JobConfig, String> {
    let name = match raw.name.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(format!(
                "jobs[{}]: name is required",
                raw.index.unwrap_or(index)
            ));
        }
        Some(name) => name.to_string(),
    };
    let at = label(index, raw, &name);
    if name.contains(|c: char| c.is_whitespace() || c.is_control()) || name.len() > 255 {
        return Err(format!(
            "{at}: name must be at most 255 bytes without spaces or control characters"
        ));
    }
    let worker = match (&raw.worker, &raw.command, &raw.program) {
        (Some(plugin), None, None) => {
            if !registry.has_plugin(plugin) {
                return Err(format!(
                    "{at}: worker = {plugin:?} is not a registered plugin (known: {})",
                    registry.plugin_names().join(", ")
                ));
            }
            WorkerKind::Plugin(plugin.clone())
        }
        (None, Some(argv), None) => WorkerKind::Command(argv_of(&at, "command", argv)?),
        (None, None, Some(argv)) => WorkerKind::Program(argv_of(&at, "program", argv)?),
        (None, None, None) => {
            return Err(format!("{at}: needs one of worker, command or program"));
        }
        _ => return Err(format!("{at}: give only one of worker, command or program")),
    };
    let limits = raw.limits().resolve(&at, default_idle)?;
    let key = |k: &str| format!("{at}: {k}");
    let codec = |field: &str, value: &Option<String>| -> Result<String, String> {
        let value = value.clone().unwrap_or_else(|| defaults::CODEC.into());
        if !registry.has_codec(&value) {
            return Err(format!(
                "{at}: {field} = {value:?} is not a known codec (known: {})",
                registry.codec_names().join(", ")
            ));
        }
        Ok(value)
    };
    let decode = codec("decode", &raw.decode)?;
    let encode = codec("encode", &raw.encode)?;
    if let WorkerKind::Program(_) = worker {
        for (set, field) in [
            (raw.decode.is_some(), "decode"),
            (raw.encode.is_some(), "encode"),
            (raw.prefetch.is_some(), "prefetch"),
            (raw.concurrency.is_some(), "concurrency"),
        ] {
            if set {
                return Err(format!(
                    "{at}: {field} does not apply to a program, which talks to the job servers itself"
                ));
            }
        }
    }
    let group = raw.group.clone().filter(|g| !g.trim().is_empty());
    if let Some(g) = &group {
        if g.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{at}: group {g:?} must not contain spaces or control characters"
            ));
        }
    }
    if let WorkerKind::Command(argv) | WorkerKind::Program(argv) = &worker {
        if raw.file.is_none() && argv.iter().any(|a| a.contains(super::FILE_PLACEHOLDER)) {
            return Err(format!(
                "{at}: {} stands for the file of a job found in a worker directory; this job has none",
                super::FILE_PLACEHOLDER
            ));
        }
    }
    if raw.watch == Some(true) && matches!(worker, WorkerKind::Plugin(_)) {
        return Err(format!(
            "{at}: watch applies to a command or a program: a plugin's code is the host's own binary (restart the host to load a new one)"
        ));
    }
    let prefetch = raw
        .prefetch
        .unwrap_or(matches!(worker, WorkerKind::Plugin(_)) && defaults::PREFETCH);
    Ok(JobConfig {
        worker,
        limits,
        decode,
        encode,
        timeout: optional_seconds(&key("timeout"), raw.timeout)?,
        prefetch,
        group,
        env: raw.env.clone().unwrap_or_default(),
        file: raw.file.clone(),
        user: None,
        watch: raw.watch.unwrap_or(false),
        name,
    })
}

/// How errors name a job entry: `jobs[2] "resize"`, or the worker directory file that gave
/// it.
fn label(index: usize, raw: &RawJob, name: &str) -> String {
    match &raw.origin {
        Some(origin) => format!("{origin} (job {name:?})"),
        None => format!("jobs[{}] {name:?}", raw.index.unwrap_or(index)),
    }
}

fn argv_of(at: &str, field: &str, argv: &[String]) -> Result<Vec<String>, String> {
    match argv.first() {
        None => Err(format!(
            "{at}: {field} is empty: give the program and its arguments"
        )),
        Some(program) if program.trim().is_empty() => Err(format!("{at}: {field}[0] is empty")),
        Some(_) => Ok(argv.to_vec()),
    }
}

/// Jobs of one group share processes, so they must agree on what processes are: a setting
/// given on one member applies to the group, and two members may not give different values.
fn check_groups(raw: &[RawJob], jobs: &[JobConfig]) -> Result<(), String> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(g) = &job.group {
            groups.entry(g.as_str()).or_default().push(i);
        }
    }
    for (group, members) in &groups {
        if let Some(clash) = jobs.iter().find(|j| j.group.is_none() && j.name == *group) {
            return Err(format!(
                "group {group:?} has the name of job {:?}, which is not in it",
                clash.name
            ));
        }
        if members.len() > 1 {
            check_programs_in_group(group, members, raw, jobs)?;
        }
        let first = members[0];
        if let Some(&i) = members.iter().find(|&&i| jobs[i].user != jobs[first].user) {
            let user = |j: usize| match &jobs[j].user {
                Some(u) => format!("user {:?}", u.spec),
                None => "the host's user".to_string(),
            };
            return Err(format!(
                "{}: runs as {}, job {:?} as {}; jobs in group {group:?} share processes, so they run as one user",
                label(i, &raw[i], &jobs[i].name),
                user(i),
                jobs[first].name,
                user(first)
            ));
        }
        // Every process setting, whatever their number.
        for setting in 0..RawLimits::default().given().len() {
            let mut given: Option<(usize, String)> = None;
            for &i in members {
                let (key, value) = raw[i].limits().given()[setting].clone();
                if let Some(value) = value {
                    match &given {
                        Some((first, v)) if *v != value => {
                            return Err(format!(
                                "{}: {key} = {value} differs from {v} on job {:?}; jobs in group {group:?} share processes, so set it once",
                                label(i, &raw[i], &jobs[i].name),
                                jobs[*first].name
                            ));
                        }
                        Some(_) => {}
                        None => given = Some((i, value)),
                    }
                }
            }
        }
    }
    Ok(())
}

/// A process of a group runs one command line for all its jobs, so a program shares a group
/// only with programs of the same command line (a worker directory's, whose `{file}` then
/// stands for every member's file).
fn check_programs_in_group(
    group: &str,
    members: &[usize],
    raw: &[RawJob],
    jobs: &[JobConfig],
) -> Result<(), String> {
    let Some(&first) = members
        .iter()
        .find(|&&i| matches!(jobs[i].worker, WorkerKind::Program(_)))
    else {
        return Ok(());
    };
    let argv = &jobs[first].worker;
    for &i in members {
        let at = label(i, &raw[i], &jobs[i].name);
        if jobs[i].worker != *argv {
            return Err(match jobs[i].worker {
                WorkerKind::Program(_) => format!(
                    "{at}: its program differs from job {:?}'s in group {group:?}: a group's \
                     processes run one program for all its jobs, so every member must give the same program",
                    jobs[first].name
                ),
                _ => format!(
                    "{}: a program cannot share group {group:?} with job {:?}, which is not one: \
                     a group's processes run one program for all its jobs",
                    label(first, &raw[first], &jobs[first].name),
                    jobs[i].name
                ),
            });
        }
        let WorkerKind::Program(args) = &jobs[i].worker else {
            unreachable!("the same as the first program");
        };
        if args
            .iter()
            .any(|a| a != super::FILE_PLACEHOLDER && a.contains(super::FILE_PLACEHOLDER))
        {
            return Err(format!(
                "{at}: in group {group:?}, {} must be an argument of its own (it stands for \
                 every member's file)",
                super::FILE_PLACEHOLDER
            ));
        }
    }
    Ok(())
}

/// Gives every member of a group the group's limits: each setting as one member gave it
/// (`check_groups` made sure no two gave different values), the defaults for the rest, the
/// rules checked for the group as a whole.
fn apply_group_settings(
    raw: &[RawJob],
    jobs: &mut [JobConfig],
    default_idle: Duration,
) -> Result<(), String> {
    let groups: BTreeSet<String> = jobs.iter().filter_map(|j| j.group.clone()).collect();
    for group in groups {
        let members: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].group.as_deref() == Some(group.as_str()))
            .collect();
        let given = members
            .iter()
            .fold(RawLimits::default(), |acc, &i| acc.or(&raw[i].limits()));
        let limits = given.resolve(&format!("group {group:?}"), default_idle)?;
        for &i in &members {
            jobs[i].limits = limits.clone();
        }
    }
    Ok(())
}

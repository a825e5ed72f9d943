//! `config.toml`: loaded with the `config` crate (the file, then `GEARDRIVER__SECTION__KEY`
//! environment overrides), deserialised into raw serde structs whose fields are all optional,
//! then validated into [`Config`], where every default is applied and every rule checked.
//!
//! Errors name the key and, for jobs, the job: `jobs[1] "resize": max_processes (2) must be
//! >= min_processes (3)`. TOML syntax errors keep the parser's line and column.
//!
//! Jobs that share a `group` share processes; [`Config::pools`] turns the job list into the
//! pools the driver supervises (a group, or a job on its own).

use crate::gearman::ServerAddr;
use crate::plugin::Registry;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config comes from when no path is given.
pub const DEFAULT_PATH: &str = "config.toml";
/// The environment variable naming the config file.
pub const PATH_VAR: &str = "GEARDRIVER_CONFIG";
/// The prefix of environment overrides: `GEARDRIVER__DRIVER__INTERVAL=1`.
pub const ENV_PREFIX: &str = "GEARDRIVER";
/// How many worker processes one host runs at most, all jobs together: the stats table has a
/// slot for each, allocated at start.
pub const MAX_PROCESSES: usize = 4096;

/// A config that could not be loaded: the file, what kind of trouble, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: no such file", path.display())]
    NoFile { path: PathBuf },
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: cannot read: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// The text does not fit the config's shape: TOML syntax (with line and column), an
    /// unknown key, a value of the wrong type. `job` is the name of the job entry it is in.
    #[error(
        "{}: {message}{}",
        path.display(),
        job.as_ref().map(|j| format!(" (job {j:?})")).unwrap_or_default()
    )]
    Shape {
        path: PathBuf,
        message: String,
        job: Option<String>,
    },
    /// A value the rules refuse; the message names the key, and the job or group.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl ConfigError {
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::NoFile { path }
            | ConfigError::NotAFile { path }
            | ConfigError::Unreadable { path, .. }
            | ConfigError::Shape { path, .. }
            | ConfigError::Invalid { path, .. } => path,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub driver: DriverConfig,
    pub console: ConsoleConfig,
    pub server: ServerConfig,
    /// Sorted by name.
    pub jobs: Vec<JobConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DriverConfig {
    pub job_servers: Vec<ServerAddr>,
    /// Seconds between queue polls; `None` turns autoscaling off.
    pub interval: Option<Duration>,
    pub max_idle_time: Duration,
    pub shutdown_timeout: Duration,
    /// The wait before restarting a crash-looping job the first time; it doubles with every
    /// quick death, up to 20 times this.
    pub restart_delay: Duration,
    pub logfile: LogTarget,
    pub loglevel: String,
    pub log_format: LogFormat,
    pub pidfile: Option<PathBuf>,
    /// No longer used (the stats table is an anonymous memfd); still accepted so that old
    /// configs load, and a warning says it is ignored.
    pub stats_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Gearman::Driver's lines: `TIME LEVEL (PID) [JOB] message key=value…`.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `None` turns the console off.
    pub listen: Option<SocketAddr>,
    pub secret: Option<String>,
    /// A client silent this long is disconnected.
    pub idle_timeout: Duration,
    /// Clients connected at once.
    pub max_connections: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Hand-outs of a job whose workers keep going away before it fails (0 = never).
    pub job_retries: u32,
}

/// What runs a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkerKind {
    /// A registered plugin, by name.
    Plugin(String),
    /// A program run once per job: payload on stdin, result on stdout.
    Command(Vec<String>),
    /// A long-running program that speaks Gearman itself.
    Program(Vec<String>),
}

/// How a pool's processes are kept: the same six settings for a job on its own and for a
/// group (whose members agree on them).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessLimits {
    pub min_processes: u32,
    pub max_processes: u32,
    /// An extra process idle this long while nothing waits is stopped.
    pub max_idle_time: Duration,
    /// Idle processes kept ready beyond the busy ones.
    pub min_spare: u32,
    /// A process is replaced after this many jobs.
    pub max_jobs: Option<u64>,
    /// A process is replaced after this long (plus a random tenth).
    pub max_lifetime: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub worker: WorkerKind,
    pub limits: ProcessLimits,
    pub decode: String,
    pub encode: String,
    pub timeout: Option<Duration>,
    pub group: Option<String>,
    pub env: BTreeMap<String, String>,
}

/// A set of processes the driver keeps: a group of jobs, or one job.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// The group name, or the job's name for a job on its own.
    pub name: String,
    /// The jobs every process of the pool serves, sorted by name.
    pub jobs: Vec<JobConfig>,
    pub limits: ProcessLimits,
}

impl PoolConfig {
    /// A pool of one long-running external program.
    pub fn program(&self) -> Option<&[String]> {
        match &self.jobs[..] {
            [job] => match &job.worker {
                WorkerKind::Program(argv) => Some(argv),
                _ => None,
            },
            _ => None,
        }
    }
}

// ---- raw, as written ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    driver: Option<RawDriver>,
    console: Option<RawConsole>,
    server: Option<RawServer>,
    jobs: Option<Vec<RawJob>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    job_servers: Option<Vec<String>>,
    interval: Option<f64>,
    max_idle_time: Option<f64>,
    shutdown_timeout: Option<f64>,
    restart_delay: Option<f64>,
    logfile: Option<String>,
    loglevel: Option<String>,
    log_format: Option<String>,
    pidfile: Option<String>,
    stats_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    listen: Option<String>,
    secret: Option<String>,
    idle_timeout: Option<f64>,
    max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    enabled: Option<bool>,
    listen: Option<String>,
    job_retries: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Option<String>,
    worker: Option<String>,
    command: Option<Vec<String>>,
    program: Option<Vec<String>>,
    min_processes: Option<u32>,
    max_processes: Option<u32>,
    max_idle_time: Option<f64>,
    min_spare: Option<u32>,
    decode: Option<String>,
    encode: Option<String>,
    timeout: Option<f64>,
    group: Option<String>,
    max_jobs: Option<u64>,
    max_lifetime: Option<f64>,
    env: Option<BTreeMap<String, String>>,
}

/// Every default, in one place: what a key left out means.
pub mod defaults {
    pub const INTERVAL_SECS: f64 = 5.0;
    pub const MAX_IDLE_TIME_SECS: f64 = 30.0;
    pub const SHUTDOWN_TIMEOUT_SECS: f64 = 30.0;
    pub const RESTART_DELAY_SECS: f64 = 0.5;
    pub const LOGLEVEL: &str = "info";
    pub const CONSOLE_LISTEN: &str = "127.0.0.1:47300";
    pub const CONSOLE_IDLE_TIMEOUT_SECS: f64 = 300.0;
    pub const CONSOLE_MAX_CONNECTIONS: u32 = 64;
    pub const SERVER_LISTEN: &str = "127.0.0.1:4730";
    pub const JOB_RETRIES: u32 = crate::gearman::server::DEFAULT_JOB_RETRIES;
    pub const CODEC: &str = "raw";
    pub const MIN_PROCESSES: u32 = 1;
    pub const MIN_SPARE: u32 = 0;

    /// An unset max_processes follows min_processes (at least one).
    pub fn max_processes(min_processes: u32) -> u32 {
        min_processes.max(1)
    }
}

/// The six process settings as a job entry gives them (each optional).
#[derive(Clone, Debug, Default)]
struct RawLimits {
    min_processes: Option<u32>,
    max_processes: Option<u32>,
    max_idle_time: Option<f64>,
    min_spare: Option<u32>,
    max_jobs: Option<u64>,
    max_lifetime: Option<f64>,
}

impl RawLimits {
    /// Each setting by name, as written (for naming a conflict between group members).
    fn given(&self) -> [(&'static str, Option<String>); 6] {
        fn text<T: ToString>(value: Option<T>) -> Option<String> {
            value.map(|v| v.to_string())
        }
        [
            ("min_processes", text(self.min_processes)),
            ("max_processes", text(self.max_processes)),
            ("max_idle_time", text(self.max_idle_time)),
            ("min_spare", text(self.min_spare)),
            ("max_jobs", text(self.max_jobs)),
            ("max_lifetime", text(self.max_lifetime)),
        ]
    }

    /// What `self` gives, and `other` where `self` is silent.
    fn or(self, other: &RawLimits) -> RawLimits {
        RawLimits {
            min_processes: self.min_processes.or(other.min_processes),
            max_processes: self.max_processes.or(other.max_processes),
            max_idle_time: self.max_idle_time.or(other.max_idle_time),
            min_spare: self.min_spare.or(other.min_spare),
            max_jobs: self.max_jobs.or(other.max_jobs),
            max_lifetime: self.max_lifetime.or(other.max_lifetime),
        }
    }

    /// With the defaults filled in and the rules checked; `at` names the job or group.
    fn resolve(&self, at: &str, default_idle: Duration) -> Result<ProcessLimits, String> {
        let key = |k: &str| format!("{at}: {k}");
        let min_processes = self.min_processes.unwrap_or(defaults::MIN_PROCESSES);
        let max_processes = self
            .max_processes
            .unwrap_or(defaults::max_processes(min_processes));
        if max_processes < min_processes {
            return Err(format!(
                "{at}: max_processes ({max_processes}) must be >= min_processes ({min_processes})"
            ));
        }
        let min_spare = self.min_spare.unwrap_or(defaults::MIN_SPARE);
        if min_spare > max_processes {
            return Err(format!(
                "{at}: min_spare ({min_spare}) cannot exceed max_processes ({max_processes})"
            ));
        }
        Ok(ProcessLimits {
            min_processes,
            max_processes,
            max_idle_time: match self.max_idle_time {
                Some(v) => seconds(&key("max_idle_time"), v)?,
                None => default_idle,
            },
            min_spare,
            max_jobs: self.max_jobs.filter(|n| *n > 0),
            max_lifetime: optional_seconds(&key("max_lifetime"), self.max_lifetime)?,
        })
    }
}

impl RawJob {
    fn limits(&self) -> RawLimits {
        RawLimits {
            min_processes: self.min_processes,
            max_processes: self.max_processes,
            max_idle_time: self.max_idle_time,
            min_spare: self.min_spare,
            max_jobs: self.max_jobs,
            max_lifetime: self.max_lifetime,
        }
    }
}

// ---- loading -----------------------------------------------------------------------------

impl Config {
    /// The path to use: the one given, else `$GEARDRIVER_CONFIG`, else `./config.toml`.
    pub fn resolve_path(given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(PATH_VAR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Loads and validates the file at `path`, with environment overrides.
    pub fn load(path: &Path, registry: &Registry) -> Result<Config, ConfigError> {
        let path_buf = path.to_path_buf();
        if !path.is_file() {
            return Err(match path.exists() {
                true => ConfigError::NotAFile { path: path_buf },
                false => ConfigError::NoFile { path: path_buf },
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path_buf,
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, path, registry)
    }

    /// Validates TOML text (with environment overrides) as if it came from `path`.
    pub fn from_toml(text: &str, path: &Path, registry: &Registry) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let shape = |error: config::ConfigError, job_names: &[Option<String>]| {
            let job = job_index(&error).and_then(|i| job_names.get(i).cloned().flatten());
            let message = match error {
                // The parser's own message (with line and column), without the crate's suffix.
                config::ConfigError::FileParse { cause, .. } => cause.to_string(),
                other => other.to_string(),
            };
            ConfigError::Shape {
                path: path.to_path_buf(),
                message: message.trim_end().to_string(),
                job,
            }
        };
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("driver.job_servers"),
            )
            .build()
            .map_err(|e| shape(e, &[]))?;
        let job_names: Vec<Option<String>> = built
            .get_array("jobs")
            .unwrap_or_default()
            .into_iter()
            .map(|job| {
                job.into_table()
                    .ok()
                    .and_then(|t| t.get("name").cloned())
                    .and_then(|n| n.into_string().ok())
            })
            .collect();
        let mut raw: RawConfig = built.try_deserialize().map_err(|e| shape(e, &job_names))?;
        override_jobs(&mut raw, std::env::vars()).map_err(invalid)?;
        validate(raw, path, registry).map_err(invalid)
    }

    /// The pools the driver supervises, sorted by name.
    pub fn pools(&self) -> Vec<PoolConfig> {
        let mut pools: BTreeMap<String, Vec<JobConfig>> = BTreeMap::new();
        for job in &self.jobs {
            let pool = job.group.clone().unwrap_or_else(|| job.name.clone());
            pools.entry(pool).or_default().push(job.clone());
        }
        pools
            .into_iter()
            .map(|(name, jobs)| {
                // Validation made the members of a group agree on these.
                PoolConfig {
                    limits: jobs[0].limits.clone(),
                    name,
                    jobs,
                }
            })
            .collect()
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// The prefix of a job entry's environment overrides: `GEARDRIVER_JOB__RESIZE__MAX_PROCESSES=8`
/// sets `max_processes` of the job named `resize` (matched exactly, else ignoring case).
pub const JOB_ENV_PREFIX: &str = "GEARDRIVER_JOB__";

/// Applies `GEARDRIVER_JOB__<NAME>__<KEY>` overrides to the job entries (the config crate
/// cannot address array entries). Every such variable must name a job and a key it knows.
fn override_jobs(
    raw: &mut RawConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), String> {
    let jobs = raw.jobs.get_or_insert_with(Vec::new);
    let mut vars: Vec<(String, String)> = vars
        .filter(|(name, _)| name.starts_with(JOB_ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let rest = &var[JOB_ENV_PREFIX.len()..];
        let Some((job, key)) = rest.rsplit_once("__") else {
            return Err(format!(
                "{var}: give the job and the key, as {JOB_ENV_PREFIX}<JOB>__<KEY>"
            ));
        };
        let names: Vec<Option<&str>> = jobs.iter().map(|j| j.name.as_deref()).collect();
        let index = names
            .iter()
            .position(|n| *n == Some(job))
            .or_else(|| {
                let folded: Vec<usize> = (0..names.len())
                    .filter(|&i| names[i].is_some_and(|n| n.eq_ignore_ascii_case(job)))
                    .collect();
                (folded.len() == 1).then(|| folded[0])
            })
            .ok_or_else(|| format!("{var}: no job is named {job:?}"))?;
        let entry = &mut jobs[index];
        let key = key.to_ascii_lowercase();
        let bad = |what: &str| format!("{var} = {value:?} is not {what}");
        let count = || {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| bad("a whole number"))
        };
        let secs = || {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| bad("a number of seconds"))
        };
        match key.as_str() {
            "min_processes" => entry.min_processes = Some(count()?),
            "max_processes" => entry.max_processes = Some(count()?),
            "min_spare" => entry.min_spare = Some(count()?),
            "max_jobs" => {
                entry.max_jobs = Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            "max_idle_time" => entry.max_idle_time = Some(secs()?),
            "max_lifetime" => entry.max_lifetime = Some(secs()?),
            "timeout" => entry.timeout = Some(secs()?),
            "decode" => entry.decode = Some(value.clone()),
            "encode" => entry.encode = Some(value.clone()),
            _ => {
                return Err(format!(
                    "{var}: {key} cannot be set from the environment (these can: min_processes, \
                     max_processes, min_spare, max_jobs, max_idle_time, max_lifetime, timeout, \
                     decode, encode)"
                ));
            }
        }
    }
    Ok(())
}

/// The job entry a deserialisation error is in, from the key the config crate reports with
/// it (`jobs[2].max_processes`).
fn job_index(error: &config::ConfigError) -> Option<usize> {
    let key = match error {
        config::ConfigError::Type { key, .. } | config::ConfigError::At { key, .. } => {
            key.as_deref()?
        }
        _ => return None,
    };
    key.strip_prefix("jobs[")?.split(']').next()?.parse().ok()
}

/// Environment variables that may carry the console secret: the config override and the one
/// `geardriver ctl` reads. Worker processes never see them.
pub const SECRET_VARS: [&str; 2] = ["GEARDRIVER__CONSOLE__SECRET", "GEARDRIVER_CONSOLE_SECRET"];

/// The shortest autoscaling poll: each one asks every job server for `status`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest duration any setting takes: beyond it timestamps, timers and wire values
/// (CAN_DO_TIMEOUT is milliseconds in 32 bits, about 49 days) would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

fn seconds(key: &str, value: f64) -> Result<Duration, String> {
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
fn optional_seconds(key: &str, value: Option<f64>) -> Result<Option<Duration>, String> {
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

fn validate(raw: RawConfig, path: &Path, registry: &Registry) -> Result<Config, String> {
    let driver = raw.driver.unwrap_or_default();
    let server = raw.server.unwrap_or_default();
    let server_config = ServerConfig {
        enabled: server.enabled.unwrap_or(false),
        listen: socket_addr(
            "server.listen",
            server.listen.as_deref().unwrap_or(defaults::SERVER_LISTEN),
        )?,
        job_retries: server.job_retries.unwrap_or(defaults::JOB_RETRIES),
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
    let relative = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        match (p.is_relative(), path.parent()) {
            (true, Some(dir)) => dir.join(p),
            _ => p,
        }
    };
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

    let raw_jobs = raw.jobs.unwrap_or_default();
    let mut jobs = Vec::with_capacity(raw_jobs.len());
    let mut names = BTreeSet::new();
    for (index, raw_job) in raw_jobs.iter().enumerate() {
        let job = validate_job(index, raw_job, default_idle, registry)?;
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
            max_connections: match console
                .max_connections
                .unwrap_or(defaults::CONSOLE_MAX_CONNECTIONS)
            {
                0 => return Err("console.max_connections must be at least 1".into()),
                n => n as usize,
            },
        },
        server: server_config,
        jobs,
    };
    let most: u64 = config
        .pools()
        .iter()
        .map(|p| u64::from(p.limits.max_processes))
        .sum();
    if most > MAX_PROCESSES as u64 {
        return Err(format!(
            "the jobs' max_processes add up to {most}, more than the {MAX_PROCESSES} processes one host can run \
             (one stats slot each)"
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
        None | Some("") => return Err(format!("jobs[{index}]: name is required")),
        Some(name) => name.to_string(),
    };
    let at = format!("jobs[{index}] {name:?}");
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
            (raw.timeout.is_some(), "timeout"),
            (raw.max_jobs.is_some(), "max_jobs"),
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
    Ok(JobConfig {
        worker,
        limits,
        decode,
        encode,
        timeout: optional_seconds(&key("timeout"), raw.timeout)?,
        group,
        env: raw.env.clone().unwrap_or_default(),
        name,
    })
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
            if let Some(&i) = members
                .iter()
                .find(|&&i| matches!(jobs[i].worker, WorkerKind::Program(_)))
            {
                return Err(format!(
                    "jobs[{i}] {:?}: a program cannot share group {group:?}: it registers its own functions",
                    jobs[i].name
                ));
            }
        }
        for setting in 0..6 {
            let mut given: Option<(usize, String)> = None;
            for &i in members {
                let (key, value) = raw[i].limits().given()[setting].clone();
                if let Some(value) = value {
                    match &given {
                        Some((first, v)) if *v != value => {
                            return Err(format!(
                                "jobs[{i}] {:?}: {key} = {value} differs from {v} on job {:?}; jobs in group {group:?} share processes, so set it once",
                                jobs[i].name, jobs[*first].name
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

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerKind::Plugin(name) => write!(f, "worker {name}"),
            WorkerKind::Command(argv) => write!(f, "command {}", argv.join(" ")),
            WorkerKind::Program(argv) => write!(f, "program {}", argv.join(" ")),
        }
    }
}

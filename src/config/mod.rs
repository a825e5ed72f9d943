//! `config.toml`: loaded with the `config` crate (the file, then `GEARDRIVER__SECTION__KEY`
//! environment overrides), deserialised into raw serde structs whose fields are all optional,
//! then validated into [`Config`], where every default is applied and every rule checked.
//!
//! Errors name the key and, for jobs, the job: `jobs[1] "resize": max_processes (2) must be
//! >= min_processes (3)`. TOML syntax errors keep the parser's line and column.
//!
//! Jobs that share a `group` share processes; [`Config::pools`] turns the job list into the
//! pools the driver supervises (a group, or a job on its own).
//!
//! Here: the validated types, the raw ones, loading. `validate`: the rules; `limits`: the six
//! process settings; `env`: job overrides from the environment; `defaults`: every default.

pub mod defaults;
pub mod dirs;
mod env;
mod limits;
mod user;
mod validate;

pub use env::JOB_ENV_PREFIX;
pub use user::WorkerUser;

use crate::gearman::ServerAddr;
use crate::plugin::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    pub http: HttpConfig,
    pub server: ServerConfig,
    /// Sorted by name: those written as `[[jobs]]` and those found in worker directories.
    pub jobs: Vec<JobConfig>,
    pub worker_dirs: Vec<WorkerDir>,
    /// What loads but is left out, for `check-config` to print and the host to log.
    pub notes: Vec<String>,
}

/// A worker directory (GearmanManager's `worker_dir`): each file whose name matches
/// `files` is a job, named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerDir {
    /// Absolute.
    pub path: PathBuf,
    /// The glob the file names are matched against.
    pub files: String,
    /// Files added or removed are picked up without a reload, and changed ones restart
    /// their job.
    pub watch: bool,
    /// The jobs found in it, by name.
    pub jobs: Vec<String>,
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
    /// A command run when a job turns FAILED, recovers, or a process crashes (empty = none).
    pub on_event: Vec<String>,
    /// Lines of recent output kept per process (0 = none): see [`crate::driver::output`].
    pub output_buffer: usize,
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
    /// With a secret, a client that has not authenticated this long after connecting is
    /// disconnected.
    pub auth_timeout: Duration,
    /// Clients connected at once.
    pub max_connections: usize,
}

/// The HTTP endpoint: metrics, the JSON API and the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None` turns it off. A listen address that is not loopback needs the console's
    /// secret, which requests then carry as a bearer token.
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Hand-outs of a job whose workers keep going away before it fails (0 = never).
    pub job_retries: u32,
    /// The persistent queue's file, if background jobs are kept across restarts.
    pub queue: Option<PathBuf>,
    pub queue_sync: crate::gearman::server::queue::Sync,
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
    /// Idle processes past this many are stopped at once, not after `max_idle_time`
    /// (Parallel::Prefork::SpareWorkers' `max_spare_workers`).
    pub max_spare: Option<u32>,
    /// A process is replaced after this many jobs.
    pub max_jobs: Option<u64>,
    /// A process is replaced after this long (plus a random tenth).
    pub max_lifetime: Option<Duration>,
    /// A process whose resident memory (with its children's) passes this many bytes is
    /// replaced after its current job.
    pub max_memory: Option<u64>,
    /// Jobs one process runs at once (async plugins, commands), each with its own stats
    /// slot; autoscaling counts these slots.
    pub concurrency: u32,
}

impl ProcessLimits {
    /// Stats slots the pool's processes need at most: one per job each runs at once.
    pub fn slots(&self) -> u64 {
        u64::from(self.max_processes) * u64::from(self.concurrency)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub worker: WorkerKind,
    pub limits: ProcessLimits,
    pub decode: String,
    pub encode: String,
    pub timeout: Option<Duration>,
    /// Fetch the next job while a short one runs (plugin and command workers).
    pub prefetch: bool,
    pub group: Option<String>,
    pub env: BTreeMap<String, String>,
    /// The file a worker directory gave the job: what `{file}` in its argv stands for.
    pub file: Option<PathBuf>,
    /// Its processes are replaced when its code changes on disk.
    pub watch: bool,
    /// The account its processes run as; `None`: the host's.
    pub user: Option<WorkerUser>,
}

/// What stands in a `command` or `program` for the job's file (a worker directory's).
pub const FILE_PLACEHOLDER: &str = "{file}";

impl JobConfig {
    /// Its command line with `{file}` replaced by its file.
    pub fn argv(&self) -> Option<Vec<String>> {
        match &self.worker {
            WorkerKind::Plugin(_) => None,
            WorkerKind::Command(argv) | WorkerKind::Program(argv) => {
                Some(expand_files(argv, self.file.as_slice()))
            }
        }
    }
}

impl JobConfig {
    /// What `watch = true` watches: its file (a worker directory's), else the paths its
    /// command line names that exist: its arguments, and the program itself when given as
    /// a path (a bare name is found through `PATH`, and is not the job's code).
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        if let Some(file) = &self.file {
            return vec![file.clone()];
        }
        self.argv()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(i, arg)| *i > 0 || arg.contains('/'))
            .map(|(_, arg)| PathBuf::from(arg))
            .filter(|p| p.exists())
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect()
    }
}

/// `argv` with an argument that is exactly `{file}` replaced by every file (one argument
/// each), and `{file}` inside a longer argument by the first (validation allows that only
/// where there is one).
pub fn expand_files(argv: &[String], files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + files.len());
    for arg in argv {
        if arg == FILE_PLACEHOLDER {
            out.extend(files.iter().map(|f| f.display().to_string()));
        } else if arg.contains(FILE_PLACEHOLDER) {
            let file = files.first().map(|f| f.display().to_string());
            out.push(arg.replace(FILE_PLACEHOLDER, file.as_deref().unwrap_or_default()));
        } else {
            out.push(arg.clone());
        }
    }
    out
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
    /// A pool of one long-running external program: its command line, with `{file}` given
    /// every member's file (the members of a group of programs run the same one).
    pub fn program(&self) -> Option<Vec<String>> {
        let WorkerKind::Program(argv) = &self.jobs.first()?.worker else {
            return None;
        };
        let files: Vec<PathBuf> = self.jobs.iter().filter_map(|j| j.file.clone()).collect();
        Some(expand_files(argv, &files))
    }
}

// ---- raw, as written ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    driver: Option<RawDriver>,
    console: Option<RawConsole>,
    http: Option<RawHttp>,
    server: Option<RawServer>,
    jobs: Option<Vec<RawJob>>,
    worker_dirs: Option<Vec<dirs::RawWorkerDir>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    job_servers: Option<Vec<String>>,
    on_event: Option<Vec<String>>,
    interval: Option<f64>,
    max_idle_time: Option<f64>,
    shutdown_timeout: Option<f64>,
    restart_delay: Option<f64>,
    logfile: Option<String>,
    loglevel: Option<String>,
    log_format: Option<String>,
    pidfile: Option<String>,
    stats_dir: Option<String>,
    user: Option<String>,
    output_buffer: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    listen: Option<String>,
    secret: Option<String>,
    idle_timeout: Option<f64>,
    auth_timeout: Option<f64>,
    max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    enabled: Option<bool>,
    listen: Option<String>,
    job_retries: Option<u32>,
    queue: Option<String>,
    queue_sync: Option<String>,
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
    max_spare: Option<u32>,
    concurrency: Option<u32>,
    decode: Option<String>,
    encode: Option<String>,
    timeout: Option<f64>,
    prefetch: Option<bool>,
    group: Option<String>,
    max_jobs: Option<u64>,
    max_lifetime: Option<f64>,
    max_memory: Option<RawSize>,
    env: Option<BTreeMap<String, String>>,
    watch: Option<bool>,
    user: Option<String>,
    /// Set for the jobs a worker directory gave: their file, and the entry to name in
    /// errors.
    #[serde(skip)]
    file: Option<PathBuf>,
    #[serde(skip)]
    origin: Option<String>,
    /// Its place among the `[[jobs]]` entries as written, for errors, once entries that
    /// serve nothing have been left out.
    #[serde(skip)]
    index: Option<usize>,
}

/// A size as written: bytes, or text with a unit (`"512M"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a size: a whole number of bytes, or text with a unit such as \"512M\""
)]
enum RawSize {
    Bytes(u64),
    Text(String),
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
                    .with_list_parse_key("driver.job_servers")
                    .with_list_parse_key("driver.on_event"),
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
        let (worker_dirs, notes) = dirs::discover(&mut raw, path).map_err(invalid)?;
        env::override_jobs(&mut raw, std::env::vars()).map_err(invalid)?;
        let mut config = validate::validate(raw, path, registry).map_err(invalid)?;
        config.worker_dirs = worker_dirs;
        config.notes = notes;
        Ok(config)
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

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerKind::Plugin(name) => write!(f, "worker {name}"),
            WorkerKind::Command(argv) => write!(f, "command {}", argv.join(" ")),
            WorkerKind::Program(argv) => write!(f, "program {}", argv.join(" ")),
        }
    }
}

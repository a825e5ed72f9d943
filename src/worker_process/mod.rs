//! One worker process: what `geardriver worker` runs when the host starts it.
//!
//! The host passes a [`WorkerSpec`] as JSON in `GEARDRIVER_WORKER_SPEC`: the job servers, the
//! functions with what runs each (a plugin or a command), codecs, limits, and the stats slot
//! this process owns. The process serves every function on every job server with the
//! protocol's worker loop, one job at a time, and:
//!
//! - keeps its stats slot current (busy with which function, idle since, lastrun, lasterror);
//! - stops after the job in hand on SIGTERM/SIGINT, when its parent (the host) goes away,
//!   after `max_jobs` jobs or after `max_lifetime`;
//! - turns a decode failure, an `Err` or a panic into a failed job and keeps serving;
//! - ends a job that overruns its function's `timeout` itself: the client is told (the
//!   message as WORK_WARNING, then WORK_FAIL), the error recorded, and the process exits to
//!   be replaced. A job that yields is dropped at its deadline; one that blocks the runtime
//!   (a synchronous loop) is failed by a watchdog thread [`STUCK_GRACE`] later, which writes
//!   the failure on the job's connection and exits the process at once. The job servers'
//!   CAN_DO_TIMEOUT is registered [`SERVER_TIMEOUT_MARGIN`] later still, and the host kills
//!   a process that is still busy past the timeout (`driver`): both are backstops, because
//!   either of them makes gearmand hand the job out again.
//!
//! Here: the spec, the handler and the process around it; a `command` job in `command`, the
//! watchdog in `watchdog`.

mod command;
mod watchdog;

use crate::gearman::ServerAddr;
use crate::gearman::worker::{
    self, Ability, AssignedJob, JobFailure, JobHandler, WorkUpdates, WorkerConfig,
};
use crate::plugin::{Codec, DynWorker, JobContext, Registry};
use crate::stats::{self, ProcessState, StatsTable};
use bytes::Bytes;
use command::run_command;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use watchdog::Watchdog;

use tokio_util::sync::CancellationToken;

/// The environment variable carrying the spec.
pub const SPEC_VAR: &str = "GEARDRIVER_WORKER_SPEC";
/// How long past its deadline a job that does not yield keeps its process before the
/// watchdog fails it and exits.
pub const STUCK_GRACE: Duration = Duration::from_millis(500);
/// Added to a job's timeout in its CAN_DO_TIMEOUT, so that the process reports the failure
/// before the job server gives up on it (and hands the job out again).
pub const SERVER_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// The exit status of a process whose watchdog ended a stuck job.
pub const EXIT_STUCK: i32 = 124;

/// Everything a worker process needs to know, decided by the host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerSpec {
    /// The pool (group or job) this process belongs to.
    pub pool: String,
    pub servers: Vec<String>,
    /// In this order: a function's index is what the stats slot records.
    pub functions: Vec<FunctionSpec>,
    pub client_id: String,
    pub stats: Option<StatsSlot>,
    pub max_jobs: Option<u64>,
    /// Already includes the host's random splay.
    pub max_lifetime_ms: Option<u64>,
    /// The host's pid: when the parent is someone else, the host is gone.
    pub parent_pid: Option<u32>,
    /// How long the process may finish its job once the host is gone; then its process
    /// group is ended.
    #[serde(default)]
    pub shutdown_timeout_ms: u64,
    /// Jobs run at once, each by its own worker loop with its own connections and stats
    /// slot (`stats.more` holds the slots past the first).
    #[serde(default = "one")]
    pub concurrency: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub run: Runner,
    pub decode: String,
    pub encode: String,
    pub timeout_ms: Option<u64>,
    /// Fetch the next job while a short one of this function runs.
    #[serde(default)]
    pub prefetch: bool,
    /// Extra environment for a command.
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Runner {
    Plugin(String),
    Command(Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatsSlot {
    /// The descriptor the host's table is inherited at.
    pub fd: i32,
    pub slot: usize,
    /// With `concurrency` N: the slots of the other N - 1 worker loops.
    #[serde(default)]
    pub more: Vec<usize>,
}

/// A worker loop's stats slot: the table and the slot's number.
pub type Slot = Arc<(Arc<StatsTable>, usize)>;

/// A function ready to run.
struct Function {
    index: u32,
    name: Arc<str>,
    run: Run,
    decode: Arc<dyn Codec>,
    encode: Arc<dyn Codec>,
    env: BTreeMap<String, String>,
    timeout: Option<Duration>,
}

enum Run {
    Plugin(Arc<dyn DynWorker>),
    Command(Vec<String>),
}

/// Runs jobs for the worker loop and keeps the stats slot current.
pub struct ProcessHandler {
    /// A pool serves a few functions: a scan beats hashing the name.
    functions: Arc<[Function]>,
    /// This worker loop's slot. Tasks of this single-threaded runtime share it; they never
    /// run at the same time, so the slot keeps a single writer.
    stats: Option<Slot>,
    /// Shared by the process's worker loops.
    jobs_left: Option<Arc<AtomicU64>>,
    shutdown: CancellationToken,
    /// This loop's; present when a function has a timeout.
    watchdog: Option<Arc<Watchdog>>,
    /// The process's only worker loop (concurrency 1): what a timed-out command started can
    /// go with its whole process group at once. With several loops the other jobs' commands
    /// are in that group too, so it goes when the process exits.
    alone: bool,
}

impl ProcessHandler {
    fn with_slot(&self, f: impl FnOnce(&stats::SlotWriter<'_>)) {
        with_slot(self.stats.as_deref(), f);
    }
}

fn with_slot(stats: Option<&(Arc<StatsTable>, usize)>, f: impl FnOnce(&stats::SlotWriter<'_>)) {
    if let Some((table, index)) = stats {
        if let Ok(writer) = table.writer(*index) {
            f(&writer);
        }
    }
}

impl JobHandler for ProcessHandler {
    fn remaining(&self) -> Option<u64> {
        self.jobs_left
            .as_ref()
            .map(|left| left.load(Ordering::Relaxed))
    }

    async fn handle(&self, job: AssignedJob, updates: WorkUpdates) -> Result<Bytes, JobFailure> {
        let Some(function) = self
            .functions
            .iter()
            .find(|f| f.name.as_bytes() == job.function)
        else {
            return Err(JobFailure::Message(Bytes::from(format!(
                "this worker does not serve {:?}",
                String::from_utf8_lossy(&job.function)
            ))));
        };
        let handle = String::from_utf8_lossy(&job.handle);
        self.with_slot(|w| w.job_started(function.index, stats::now_ms(), &handle));
        let outcome = match (function.timeout, &self.watchdog) {
            (Some(limit), Some(watchdog)) => {
                let message = timeout_message(limit);
                let _armed = watchdog.arm(limit + STUCK_GRACE, job.abort.clone(), &message);
                let run = run_function(function, job, updates, self.stats.as_ref());
                match tokio::time::timeout(limit, run).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::warn!(function = %function.name, "{message}; exiting to be replaced");
                        if matches!(function.run, Run::Command(_)) && self.alone {
                            // Dropping the job killed the command, not what it started.
                            crate::process_group::kill_rest();
                        }
                        self.shutdown.cancel();
                        Err(message)
                    }
                }
            }
            _ => run_function(function, job, updates, self.stats.as_ref()).await,
        };
        let error = outcome.as_ref().err().map(String::as_str);
        self.with_slot(|w| w.job_finished(stats::now_ms(), error));
        if let Some(left) = &self.jobs_left {
            if left.fetch_sub(1, Ordering::Relaxed) <= 1 {
                tracing::info!(pool = %function.name, "max_jobs reached; exiting to be replaced");
                self.shutdown.cancel();
            }
        }
        outcome.map_err(|message| JobFailure::Message(Bytes::from(message)))
    }
}

/// SIGKILLs every other process of this process's group: what a command started (a shell's
/// children, their children). The host starts each worker process as the leader of its own
/// group, and the worker runs one job at a time, so the group is this job's command tree.
fn timeout_message(limit: Duration) -> String {
    format!("timeout: the job ran longer than {}s", limit.as_secs_f64())
}

/// Decode, run, encode. An error is the message the client and the stats table get.
async fn run_function(
    function: &Function,
    job: AssignedJob,
    updates: WorkUpdates,
    slot: Option<&Slot>,
) -> Result<Bytes, String> {
    match &function.run {
        // Boxed: the command's future is large and would make every plugin job pay for
        // moving it around.
        Run::Command(argv) => Box::pin(run_command(argv, &function.env, job.data)).await,
        Run::Plugin(plugin) => {
            let input = function.decode.decode(job.data)?;
            let context = JobContext::new(function.name.clone(), job.handle, job.unique, updates)
                .with_slot(slot.cloned());
            // The plugin layer catches panics in the job itself (so `end` still runs); this
            // catches the rest (a panicking hook).
            let result = std::panic::AssertUnwindSafe(plugin.call(&context, input))
                .catch_unwind()
                .await;
            match result {
                Ok(Ok(output)) => function.encode.encode(output),
                Ok(Err(e)) => Err(e.message().to_string()),
                Err(panic) => Err(format!(
                    "panic: {}",
                    crate::plugin::panic_message(panic.as_ref())
                )),
            }
        }
    }
}

/// Why a worker process could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid worker spec: {0}")]
    Spec(String),
    #[error("{0}")]
    Stats(#[from] stats::StatsError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the host that started this process is gone")]
    HostGone,
}

/// Reads the spec from the environment.
pub fn spec_from_env() -> Option<Result<WorkerSpec, SpawnError>> {
    let json = std::env::var(SPEC_VAR).ok()?;
    Some(serde_json::from_str(&json).map_err(|e| SpawnError::Spec(e.to_string())))
}

/// The worker loops' settings and job handlers for a spec (one each: `concurrency` of them):
/// everything a worker process runs, without the process around it (signals, parent watch,
/// runtime), so it can also be served in-process.
pub fn prepare(
    spec: &WorkerSpec,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Vec<(WorkerConfig, ProcessHandler)>, SpawnError> {
    let servers = spec
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| SpawnError::Spec(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let loops = spec.concurrency.max(1) as usize;
    let mut functions = Vec::new();
    let mut abilities = Vec::new();
    for (index, f) in spec.functions.iter().enumerate() {
        let codec = |name: &str| {
            registry
                .get_codec(name)
                .ok_or_else(|| SpawnError::Spec(format!("unknown codec {name:?}")))
        };
        let run = match &f.run {
            Runner::Plugin(name) => Run::Plugin(
                registry
                    .plugin(name)
                    .ok_or_else(|| SpawnError::Spec(format!("unknown plugin {name:?}")))?,
            ),
            Runner::Command(argv) if argv.is_empty() => {
                return Err(SpawnError::Spec(format!("{}: empty command", f.name)));
            }
            Runner::Command(argv) => Run::Command(argv.clone()),
        };
        let timeout = f.timeout_ms.filter(|&ms| ms > 0).map(Duration::from_millis);
        // Several loops already overlap their round trips; a second connection each would
        // only double them.
        let prefetch = f.prefetch && loops == 1;
        abilities.push(
            Ability::new(f.name.clone())
                .with_timeout(timeout.map(|t| t + SERVER_TIMEOUT_MARGIN))
                .with_prefetch(prefetch),
        );
        functions.push(Function {
            index: index as u32,
            name: Arc::from(f.name.as_str()),
            run,
            decode: codec(&f.decode)?,
            encode: codec(&f.encode)?,
            env: f.env.clone(),
            timeout,
        });
    }
    let functions: Arc<[Function]> = functions.into();
    let slots: Vec<Option<Slot>> = match &spec.stats {
        None => vec![None; loops],
        Some(slot) => {
            let table = Arc::new(StatsTable::attach_inherited(slot.fd)?);
            let numbers: Vec<usize> = std::iter::once(slot.slot)
                .chain(slot.more.iter().copied())
                .collect();
            if numbers.len() != loops {
                return Err(SpawnError::Spec(format!(
                    "concurrency {loops} needs as many stats slots, got {}",
                    numbers.len()
                )));
            }
            let mut slots = Vec::with_capacity(loops);
            for number in numbers {
                let table = table.clone();
                table
                    .writer(number)?
                    .assign(std::process::id(), stats::now_ms());
                slots.push(Some(Arc::new((table, number))));
            }
            if let Some(first) = &slots[0] {
                crate::title::keep(
                    first.clone(),
                    spec.pool.clone(),
                    spec.functions.iter().map(|f| f.name.clone()).collect(),
                );
            }
            slots
        }
    };
    let jobs_left = spec.max_jobs.map(|n| Arc::new(AtomicU64::new(n)));
    let timeouts = functions.iter().any(|f| f.timeout.is_some());
    let mut prepared = Vec::with_capacity(loops);
    for stats in slots {
        let watchdog = if timeouts {
            Some(Watchdog::start(stats.clone()).map_err(SpawnError::Runtime)?)
        } else {
            None
        };
        let mut config = WorkerConfig::new(servers.clone(), abilities.clone());
        config.client_id = Some(Bytes::from(match &stats {
            Some(slot) if loops > 1 => format!("{}:{}", spec.client_id, slot.1),
            _ => spec.client_id.clone(),
        }));
        let handler = ProcessHandler {
            functions: functions.clone(),
            stats,
            jobs_left: jobs_left.clone(),
            shutdown: shutdown.clone(),
            watchdog,
            alone: loops == 1,
        };
        prepared.push((config, handler));
    }
    Ok(prepared)
}

/// Runs the worker process to completion.
pub fn run(spec: WorkerSpec, registry: &Registry) -> Result<(), SpawnError> {
    let shutdown = CancellationToken::new();
    if let Some(host) = spec.parent_pid {
        let token = shutdown.clone();
        let grace = Duration::from_millis(spec.shutdown_timeout_ms);
        if !crate::process_group::watch_host(host, grace, move || token.cancel()) {
            return Err(SpawnError::HostGone);
        }
    }
    stop_on_signals(shutdown.clone()).map_err(SpawnError::Runtime)?;
    // SIGHUP and SIGUSR1 are the host's (reload, reopen the log): a `killall -HUP geardriver`
    // must not kill its workers. (A handler, not SIG_IGN, so commands get the defaults.)
    for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGUSR1] {
        let _ = signal_hook::flag::register(
            signal,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
    }
    let loops = prepare(&spec, registry, shutdown.clone())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(SpawnError::Runtime)?;
    runtime.block_on(async {
        if let Some(ms) = spec.max_lifetime_ms {
            let token = shutdown.clone();
            let pool = spec.pool.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                tracing::info!(%pool, "max_lifetime reached; exiting to be replaced");
                token.cancel();
            });
        }
        // A task of its own marks the slot as stopping, so the hot loop does not poll the
        // cancellation token on every wake-up.
        let token = shutdown.clone();
        let slots: Vec<_> = loops.iter().map(|(_, h)| h.stats.clone()).collect();
        tokio::spawn(async move {
            token.cancelled().await;
            for slot in &slots {
                with_slot(slot.as_deref(), |w| {
                    w.set_state(ProcessState::Stopping, stats::now_ms())
                });
            }
        });
        for (_, handler) in &loops {
            handler.with_slot(|w| w.set_state(ProcessState::Idle, stats::now_ms()));
        }
        let serving = loops
            .iter()
            .map(|(config, handler)| worker::run(config, handler, &shutdown));
        futures_util::future::join_all(serving).await;
    });
    // Whatever a command left running (`sleep 1000 &`) goes with the process.
    crate::process_group::kill_rest();
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT. A thread of its own reads the signals (through
/// signal-hook's self-pipe) so tokio's signal driver is not polled on every turn of the
/// worker's hot loop, and the signal mask is left alone (commands inherit it).
pub fn stop_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                shutdown.cancel();
            }
        })
        .map(drop)
}

//! The supervisor: the one owner of every pool and process. It starts processes, hears of
//! their exits, keeps each pool between its limits, scales it with the queue reports, backs
//! off from crash loops, applies reloads and stops everything at the end. Everyone else sends
//! it [`Event`]s and reads the [`ProcessTable`] it publishes.
//!
//! Here: the pools, the event loop, scaling and starting, exits and overruns. By event kind
//! elsewhere: `control` (console and signal requests), `reload` (a new config), `stop` (the
//! host's stop).

mod control;
mod reload;
mod stop;

use super::backoff::{self, CrashLoop};
use super::events::{Events, HostEvent};
use super::output::OutputBuffers;
use super::process::{self, Launch};
use super::scaling::{self, Activity, PoolView, ProcessView};
use super::table::{PoolEntry, ProcessEntry, ProcessTable, Totals};
use super::{Event, QueueReport};
use crate::config::{Config, JobConfig, PoolConfig};
use crate::stats::{self, ProcessState, StatsTable};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often pools are checked against their minimum, backoffs and stop deadlines.
const TICK: Duration = Duration::from_millis(200);
/// How long a program that does not (yet) report is taken as starting before the host
/// guesses what it does from the queues.
const UNREPORTED_GRACE_MS: i64 = 1_000;
/// Memory and CPU are sampled (and `max_memory` checked) every this many ticks (once a
/// second).
const USAGE_TICKS: u64 = 5;
/// How long a process that has not taken a job yet is left alone by `max_memory`.
const UNTESTED_GRACE: Duration = Duration::from_secs(30);
/// How long past its timeout a busy process may take to fail its job and exit by itself
/// before the host kills it: more than the process's own watchdog needs
/// ([`crate::worker_process::STUCK_GRACE`]).
const OVERRUN_BACKSTOP: Duration = Duration::from_secs(2);
/// After SIGKILL, how long to wait for the kernel to report the exits.
const KILL_GRACE: Duration = Duration::from_secs(5);

struct Process {
    /// Its stats slots: one per job it runs at once (`concurrency`); the first also carries
    /// what is the process's own (its state while it starts, its pid for the title).
    slots: Vec<usize>,
    started: Instant,
    started_ms: i64,
    generation: u64,
    /// When we asked it to stop.
    stop_requested: Option<Instant>,
    killed: bool,
    /// It ran for [`backoff::QUICK`]: the crash-loop counter was reset for it.
    proven: bool,
    /// An operator stopped it (`kill`, `killall`): replaced like one that died, but its end
    /// is not a crash (nor a restart in the metrics).
    operator_stopped: bool,
    /// Its last usage sample, and its CPU share since the one before (‰ of one core).
    usage: Option<(Instant, crate::procinfo::Usage)>,
    cpu_permille: Option<u32>,
    /// The jobs it serves, as its stats slot numbers them: those it was started with. A
    /// reload may have changed the pool's since (a timeout, a group's members) while it
    /// finishes its job.
    jobs: Arc<[JobConfig]>,
    /// Per slot, the jobs it had finished and its lasterror when last folded into the job
    /// records: a slot keeps its last job's lastrun and a few recent functions', so a
    /// process of a group that runs many functions would otherwise lose the older ones.
    folded: Vec<(i64, i64)>,
}

struct Pool {
    config: PoolConfig,
    min: u32,
    max: u32,
    processes: BTreeMap<u32, Process>,
    crash: CrashLoop,
    /// Processes of an older generation were started from an older config: they are
    /// replaced.
    generation: u64,
    /// Gone from the config: its processes are stopping, then it goes.
    removed: bool,
    /// Jobs waiting for the pool and jobs being worked on, at the last queue report, and
    /// when the queues last had any of its jobs (ms since the epoch): the guess for a
    /// process that does not say what it does.
    waiting: Option<u64>,
    running: u64,
    quiet_since_ms: i64,
    /// What its processes that exited did.
    exited: Totals,
}

impl Pool {
    fn new(config: PoolConfig, restart_delay: Duration) -> Pool {
        Pool {
            min: config.limits.min_processes,
            max: config.limits.max_processes,
            config,
            processes: BTreeMap::new(),
            crash: CrashLoop::new(restart_delay),
            generation: 0,
            removed: false,
            waiting: None,
            running: 0,
            quiet_since_ms: stats::now_ms(),
            exited: Totals::default(),
        }
    }

    /// What a process is doing, from its slot. For processes that do not report (a
    /// `program` that writes no status lines) it is a guess from the queues: all busy while
    /// jobs wait for the pool (an idle one would have taken them); else as many busy as jobs
    /// run (`guessed_busy` counts them out), the others idle, but only since the queues last
    /// held any of the pool's jobs, so that none is stopped for idleness while one may be
    /// working.
    fn activity(
        &self,
        snapshot: Option<stats::SlotSnapshot>,
        now_ms: i64,
        guessed_busy: &mut u64,
    ) -> Activity {
        let idle_for =
            |since: i64| Duration::from_millis(now_ms.saturating_sub(since).max(0) as u64);
        match snapshot {
            Some(s) if s.state == ProcessState::Busy => Activity::Busy,
            // A program gets a moment to say what it does before the host guesses: one
            // still loading its libraries is starting, not busy with a job that waits.
            Some(s)
                if s.state == ProcessState::Idle
                    && !s.reports
                    && now_ms.saturating_sub(s.started_ms) < UNREPORTED_GRACE_MS =>
            {
                Activity::Starting
            }
            Some(s) if s.state == ProcessState::Idle && !s.reports => {
                if self.waiting.is_some_and(|w| w > 0) {
                    Activity::Busy
                } else if *guessed_busy < self.running {
                    *guessed_busy += 1;
                    Activity::Busy
                } else {
                    Activity::Idle(idle_for(s.idle_since_ms.max(self.quiet_since_ms)))
                }
            }
            Some(s) if s.state == ProcessState::Idle => Activity::Idle(idle_for(s.idle_since_ms)),
            _ => Activity::Starting,
        }
    }

    fn live(&self) -> impl Iterator<Item = (&u32, &Process)> {
        self.processes
            .iter()
            .filter(|(_, p)| p.stop_requested.is_none())
    }
}

pub struct Supervisor {
    /// The config in force; every change is published to `published` for the rest.
    config: Arc<Config>,
    published: watch::Sender<Arc<Config>>,
    exe: PathBuf,
    host_pid: u32,
    pools: BTreeMap<String, Pool>,
    stats: Arc<StatsTable>,
    free_slots: Vec<usize>,
    /// "No free stats slot" is logged at most once per 10 s (a reload near the cap retries
    /// every tick until old processes exit).
    no_slot_logged: crate::logging::Throttle,
    events: mpsc::UnboundedSender<Event>,
    table: Arc<ProcessTable>,
    stopping: bool,
    /// Ticks so far (for what is checked less often than every tick).
    ticks: u64,
    /// Where `on_event` hears of failures, recoveries and crashes (once running).
    told: Option<Events>,
    /// Every process's recent output: started with the process, marked when it exits.
    output: OutputBuffers,
}

impl Supervisor {
    pub fn new(
        config: Arc<Config>,
        published: watch::Sender<Arc<Config>>,
        exe: PathBuf,
        stats: Arc<StatsTable>,
        events: mpsc::UnboundedSender<Event>,
        table: Arc<ProcessTable>,
    ) -> Supervisor {
        let free_slots = (0..stats.capacity()).rev().collect();
        let pools = config
            .pools()
            .into_iter()
            .map(|p| (p.name.clone(), Pool::new(p, config.driver.restart_delay)))
            .collect();
        Supervisor {
            config,
            published,
            exe,
            host_pid: std::process::id(),
            pools,
            stats,
            free_slots,
            no_slot_logged: crate::logging::Throttle::new(Duration::from_secs(10)),
            events,
            table,
            stopping: false,
            ticks: 0,
            told: None,
            output: OutputBuffers::default(),
        }
    }

    /// Keeps its processes' recent output in `output` (shared with the host's handle).
    pub fn with_output(mut self, output: OutputBuffers) -> Supervisor {
        self.output = output;
        self
    }

    /// Runs until `shutdown` is cancelled, then stops every process (gracefully, then by
    /// force after `shutdown_timeout`) and returns once all are reaped.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) {
        let dir = self
            .config
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        self.told = Some(Events::start(dir));
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            self.reconcile(&name, None);
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = events.recv() => self.handle(event),
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.stop_everything(&mut events).await;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Exited { pool, pid, status } => self.on_exit(&pool, pid, status),
            Event::Queues(report) => self.on_queues(&report),
            Event::Control(control) => self.on_control(control),
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in &names {
            let timeout = self.config.driver.shutdown_timeout;
            let pool = self.pools.get_mut(name).expect("listed");
            for (pid, p) in pool.processes.iter_mut() {
                if !p.proven && now.duration_since(p.started) >= backoff::QUICK {
                    p.proven = true;
                    pool.crash.on_survived();
                }
                if let Some(asked) = p.stop_requested {
                    // A process asked to stop while the host runs on (a lowered max, a
                    // reload, `kill`) finishes the job it holds, however long: the job's own
                    // timeout bounds it. Only an idle one that does not go is killed, and
                    // its shutdown_timeout counts from when it was last seen busy: one
                    // that has just finished its job is on its way out.
                    let busy = read_slots(&self.stats, *pid, p).any(|s| s.holds_job());
                    if busy {
                        p.stop_requested = Some(now);
                    } else if !p.killed && now.duration_since(asked) >= timeout {
                        tracing::warn!(pid = *pid, job = %name, "did not stop within shutdown_timeout; killing it");
                        let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                        p.killed = true;
                    }
                }
            }
            self.reconcile(name, None);
        }
        self.kill_overruns();
        self.fold_groups();
        self.ticks += 1;
        self.table.beat();
        if self.ticks % USAGE_TICKS == 0 {
            self.sample_usage();
            self.recycle_oversized();
            let names: Vec<String> = self.pools.keys().cloned().collect();
            for name in &names {
                self.publish(name);
            }
        }
    }

    /// Every process's memory and CPU (its descendants' included), for the console, the
    /// metrics and `max_memory`.
    fn sample_usage(&mut self) {
        let now = Instant::now();
        for pool in self.pools.values_mut() {
            // A plugin worker's process is all there is; a command's or a program's work
            // is in its children (one read per process, or a walk of its tree).
            let has_children = pool
                .config
                .jobs
                .iter()
                .any(|j| !matches!(j.worker, crate::config::WorkerKind::Plugin(_)));
            for (&pid, p) in pool.processes.iter_mut() {
                let sampled = if has_children {
                    crate::procinfo::tree_usage(pid)
                } else {
                    crate::procinfo::usage(pid)
                };
                let Some(usage) = sampled else {
                    continue;
                };
                if let Some((then, before)) = p.usage {
                    let seconds = now.duration_since(then).as_secs_f64();
                    let ticks = usage.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
                    if seconds > 0.0 {
                        let share = ticks / crate::procinfo::TICKS_PER_SECOND as f64 / seconds;
                        p.cpu_permille = Some((share * 1000.0).round() as u32);
                    }
                }
                p.usage = Some((now, usage));
            }
        }
    }

    /// Processes whose resident memory (their descendants' included) passed their job's
    /// `max_memory` are asked to stop: each finishes its job, and the pool replaces it.
    fn recycle_oversized(&mut self) {
        let mut oversized = Vec::new();
        for (name, pool) in &self.pools {
            let Some(limit) = pool.config.limits.max_memory else {
                continue;
            };
            for (&pid, p) in &pool.processes {
                if p.stop_requested.is_some() {
                    continue;
                }
                let slot = self.stats.read(p.slots[0]).filter(|s| s.pid == pid);
                let worked =
                    read_slots(&self.stats, pid, p).any(|s| s.holds_job() || s.has_served());
                if !worked && !judged_by_memory(slot.as_ref(), p.started.elapsed()) {
                    continue;
                }
                let rss = p.usage.map_or(0, |(_, u)| u.rss_bytes);
                if rss > limit {
                    oversized.push((name.clone(), pid, rss, limit));
                }
            }
        }
        for (name, pid, rss, limit) in oversized {
            tracing::info!(pid, job = %name, rss_mib = rss >> 20, max_memory_mib = limit >> 20, "resident memory over max_memory; replacing the process after its current job");
            self.request_stop(&name, pid);
            if let Some(pool) = self.pools.get_mut(&name) {
                pool.exited.memory_recycles += 1;
            }
        }
    }

    /// A process still busy [`OVERRUN_BACKSTOP`] after its job's `timeout` (as the process
    /// was started with it) is killed (with what it started) and replaced; the overrun becomes the job's last error. The process
    /// normally ends such a job itself and tells the job server first; a kill makes gearmand
    /// hand the job out again (up to its `--job-retries`).
    fn kill_overruns(&mut self) {
        let now_ms = stats::now_ms();
        let mut overruns = Vec::new();
        for (name, pool) in &self.pools {
            for (&pid, p) in &pool.processes {
                if p.killed {
                    continue;
                }
                let overrun = read_slots(&self.stats, pid, p)
                    .filter(|slot| slot.holds_job())
                    .find_map(|slot| {
                        let job = slot.function.and_then(|f| p.jobs.get(f as usize))?;
                        let timeout = job.timeout?;
                        let late = now_ms.saturating_sub(slot.job_started_ms)
                            > (timeout + OVERRUN_BACKSTOP).as_millis() as i64;
                        late.then(|| (job.name.clone(), timeout))
                    });
                if let Some((job, timeout)) = overrun {
                    overruns.push((name.clone(), pid, job, timeout));
                }
            }
        }
        for (name, pid, job, timeout) in overruns {
            let message = format!(
                "timeout: the job ran longer than {}s; its process was killed",
                timeout.as_secs_f64()
            );
            tracing::warn!(pid, job = %name, function = %job, "{message}");
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            if let Some(p) = self
                .pools
                .get_mut(&name)
                .and_then(|pool| pool.processes.get_mut(&pid))
            {
                // Asked for, as far as crash-loop accounting goes: the process did not crash.
                p.stop_requested = Some(Instant::now());
                p.killed = true;
            }
            self.table
                .merge_job(&job, &name, 0, now_ms.div_euclid(1000), &message);
            self.publish(&name);
        }
    }

    fn on_queues(&mut self, report: &QueueReport) {
        // Per job, for the console and the API: what every server said (or, when some did
        // not answer, what those that did said about the jobs they know).
        let queues = self
            .pools
            .values()
            .flat_map(|p| &p.config.jobs)
            .filter_map(|j| {
                let waiting = report.waiting.get(&j.name).copied();
                let running = report.running.get(&j.name).copied();
                match (report.complete, waiting, running) {
                    (true, w, r) => Some((j.name.clone(), (w.unwrap_or(0), r.unwrap_or(0)))),
                    (false, None, None) => None,
                    (false, w, r) => Some((j.name.clone(), (w.unwrap_or(0), r.unwrap_or(0)))),
                }
            })
            .collect();
        self.table.set_queues(queues);
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let pool = &self.pools[&name];
            let waiting = report.complete.then(|| {
                pool.config
                    .jobs
                    .iter()
                    .map(|j| report.waiting.get(&j.name).copied().unwrap_or(0))
                    .sum()
            });
            // With some job servers unreadable, scale up on what is known but never down.
            let waiting = waiting.or_else(|| {
                let known: u64 = pool
                    .config
                    .jobs
                    .iter()
                    .filter_map(|j| report.waiting.get(&j.name))
                    .sum();
                (known > 0).then_some(known)
            });
            let running: u64 = pool
                .config
                .jobs
                .iter()
                .filter_map(|j| report.running.get(&j.name))
                .sum();
            let pool = self.pools.get_mut(&name).expect("listed");
            pool.waiting = waiting;
            pool.running = running;
            if waiting.is_some_and(|w| w > 0) || running > 0 {
                pool.quiet_since_ms = stats::now_ms();
            }
            self.reconcile(&name, waiting);
        }
    }

    /// Brings a pool to what [`scaling::plan`] says, within the crash-loop backoff.
    fn reconcile(&mut self, name: &str, waiting: Option<u64>) {
        if self.stopping {
            return;
        }
        let Some(pool) = self.pools.get(name) else {
            return;
        };
        if pool.removed {
            return;
        }
        let now = Instant::now();
        let now_ms = stats::now_ms();
        let mut guessed_busy = 0;
        let processes: Vec<ProcessView> = pool
            .live()
            // One that stops on its own (max_jobs, max_lifetime, a job past its timeout)
            // takes no new job: it is no capacity, and is replaced while it finishes.
            .filter(|&(&pid, p)| {
                !read_slots(&self.stats, pid, p).any(|s| s.state == ProcessState::Stopping)
            })
            .map(|(&pid, p)| {
                // A slot not claimed yet reads as starting.
                let activities: Vec<Activity> = p
                    .slots
                    .iter()
                    .map(|&slot| {
                        let slot = self.stats.read(slot).filter(|s| s.pid == pid);
                        pool.activity(slot, now_ms, &mut guessed_busy)
                    })
                    .collect();
                ProcessView {
                    pid,
                    activity: combined(&activities),
                }
            })
            .collect();
        let busy = processes
            .iter()
            .filter(|p| p.activity == Activity::Busy)
            .count();
        let live = processes.len();
        // Unknown while the queues are not watched (interval = 0) or could not be read.
        let queued = || waiting.map_or_else(|| "unknown".to_string(), |w| w.to_string());
        let plan = scaling::plan(&PoolView {
            min: pool.min,
            max: pool.max,
            min_spare: pool.config.limits.min_spare,
            max_spare: pool.config.limits.max_spare,
            max_idle_time: pool.config.limits.max_idle_time,
            processes,
            waiting,
            concurrency: pool.config.limits.concurrency,
        });
        if !plan.stop.is_empty() {
            tracing::info!(job = %name, stopping = ?plan.stop, processes = live, busy, waiting = %queued(), "scale down: {}", plan.why);
        }
        for pid in plan.stop {
            self.request_stop(name, pid);
        }
        if plan.start > 0 && self.pools[name].crash.may_start(now) {
            tracing::info!(job = %name, starting = plan.start, processes = live, busy, waiting = %queued(), "scale up: {}", plan.why);
            for _ in 0..plan.start {
                if !self.start_process(name) {
                    break;
                }
            }
        }
        self.publish(name);
    }

    /// Starts one process of a pool; false when it could not.
    fn start_process(&mut self, name: &str) -> bool {
        let pool = &self.pools[name];
        let wanted = pool.config.limits.concurrency.max(1) as usize;
        if self.free_slots.len() < wanted {
            if let Some(held_back) = self.no_slot_logged.allow() {
                tracing::error!(job = %name, capacity = self.stats.capacity(), free = self.free_slots.len(), wanted, held_back, "no free stats slot: too many processes (or stopping ones still hold theirs)");
            }
            return false;
        }
        let slots = self.free_slots.split_off(self.free_slots.len() - wanted);
        let slot_count = slots.len();
        // The process claims its slots itself (it knows its pid); until then they read as
        // free.
        for &slot in &slots {
            if let Ok(writer) = self.stats.writer(slot) {
                writer.clear();
            }
        }
        let lifetime_ms = pool
            .config
            .limits
            .max_lifetime
            .map(|l| with_splay(l).as_millis() as u64);
        let launch = Launch {
            exe: &self.exe,
            pool: &pool.config,
            servers: &self.config.driver.job_servers,
            stats: &self.stats,
            slots: &slots,
            host_pid: self.host_pid,
            shutdown_timeout: self.config.driver.shutdown_timeout,
            lifetime_ms,
            output: &self.output,
            output_lines: self.config.driver.output_buffer,
        };
        match process::spawn(launch, self.events.clone()) {
            Ok(pid) => {
                tracing::info!(pid, job = %name, "Process started");
                let pool = self.pools.get_mut(name).expect("exists");
                pool.processes.insert(
                    pid,
                    Process {
                        slots,
                        started: Instant::now(),
                        started_ms: stats::now_ms(),
                        generation: pool.generation,
                        stop_requested: None,
                        killed: false,
                        proven: false,
                        operator_stopped: false,
                        usage: None,
                        cpu_permille: None,
                        jobs: Arc::from(pool.config.jobs.as_slice()),
                        folded: vec![(0, 0); slot_count],
                    },
                );
                true
            }
            Err(e) => {
                self.free_slots.extend(slots);
                tracing::error!(job = %name, error = %e, "cannot start a process");
                let pool = self.pools.get_mut(name).expect("exists");
                pool.crash.on_exit(
                    Duration::ZERO,
                    false,
                    false,
                    Instant::now(),
                    &format!("could not start: {e}"),
                );
                false
            }
        }
    }

    /// SIGTERM: the process finishes the job it holds and exits.
    /// Asks every process of `name` started from an older generation to stop (after its
    /// job): it is replaced by one of the current.
    fn stop_older_generations(&mut self, name: &str) {
        let Some(pool) = self.pools.get(name) else {
            return;
        };
        let old: Vec<u32> = pool
            .processes
            .iter()
            .filter(|(_, p)| p.generation < pool.generation)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in old {
            self.request_stop(name, pid);
        }
    }

    fn request_stop(&mut self, name: &str, pid: u32) {
        let Some(p) = self
            .pools
            .get_mut(name)
            .and_then(|pool| pool.processes.get_mut(&pid))
        else {
            return;
        };
        if p.stop_requested.is_none() {
            p.stop_requested = Some(Instant::now());
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }

    fn on_exit(&mut self, name: &str, pid: u32, status: std::io::Result<std::process::ExitStatus>) {
        // Whatever the process left in its group goes too (it normally ends its group
        // itself; not when it was SIGKILLed). Its pid cannot have been reused while the
        // group it names still has members.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let (how, success) = process::describe_exit(&status);
        tracing::info!(pid, job = %name, "Exited with status {how}");
        self.output.exited(pid, &how, stats::now_ms());
        let Some(pool) = self.pools.get_mut(name) else {
            return;
        };
        let Some(process) = pool.processes.remove(&pid) else {
            return;
        };
        let final_stats: Vec<stats::SlotSnapshot> =
            read_slots(&self.stats, pid, &process).collect();
        for snapshot in &final_stats {
            pool.exited.add_slot(snapshot);
        }
        self.table.merge_slots(
            final_stats
                .iter()
                .map(|s| (name.to_string(), process.jobs.clone(), s.clone()))
                .collect(),
        );
        for &slot in &process.slots {
            if let Ok(writer) = self.stats.writer(slot) {
                writer.clear();
            }
        }
        self.free_slots.extend(&process.slots);
        let requested = process.stop_requested.is_some();
        let unasked = !requested && !process.operator_stopped;
        pool.exited.restarts += u64::from(unasked);
        if unasked && !success {
            if let Some(told) = &self.told {
                told.tell(
                    &self.config.driver.on_event,
                    HostEvent::ProcessCrashed {
                        job: name.to_string(),
                        pid,
                        how: format!("exited with status {how}"),
                    },
                );
            }
        }
        if !requested && !success {
            // A job in hand when it died is lost to this process; the job server re-queues it.
            for s in final_stats.iter().filter(|s| s.holds_job()) {
                let job = s
                    .function
                    .and_then(|f| process.jobs.get(f as usize))
                    .map(|j| j.name.clone());
                tracing::warn!(pid, job = %name, function = job.as_deref().unwrap_or("?"), "died holding a job; unless it said how the job ended, the job server gives it to another process (up to its retry limit)");
                // The job's last error, so that a poison payload shows in `status`.
                if let Some(job) = job {
                    let now = stats::now_ms().div_euclid(1000);
                    let message =
                        format!("the process died holding a job: exited with status {how}");
                    self.table.merge_job(&job, name, 0, now, &message);
                }
            }
        }
        // A process never SIGKILLs itself: that was an operator, the OOM killer or a fault
        // test, and says nothing about whether the job can start. It is replaced, but it does
        // not count towards a crash loop.
        let killed_from_outside = !requested && process::killed_by_sigkill(&status);
        // Nor does a death after the process took a job: that is the job's doing (a poison
        // payload), not the function's, which keeps serving other payloads. The job server
        // stops handing such a job out after its retries.
        let served = final_stats.iter().any(|s| s.holds_job() || s.has_served());
        pool.crash.on_exit(
            process.started.elapsed(),
            success,
            requested || killed_from_outside || served,
            Instant::now(),
            &format!("exited with status {how}"),
        );
        if let Some(reason) = pool.crash.failed() {
            if !requested && !success {
                tracing::error!(job = %name, %reason, "giving up on this job until it is reset (reload, set_processes or killall)");
            }
        }
        if pool.removed && pool.processes.is_empty() {
            self.pools.remove(name);
            self.table.remove_pool(name);
            return;
        }
        self.reconcile(name, None);
    }

    fn publish(&self, name: &str) {
        let Some(pool) = self.pools.get(name) else {
            return;
        };
        let was_failed = self
            .table
            .current()
            .pools()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, p)| p.failed.is_some());
        let failed = pool.crash.failed();
        if let Some(told) = &self.told {
            match (was_failed, failed) {
                (false, Some(reason)) => told.tell(
                    &self.config.driver.on_event,
                    HostEvent::JobFailed {
                        job: name.to_string(),
                        reason: reason.to_string(),
                    },
                ),
                (true, None) => told.tell(
                    &self.config.driver.on_event,
                    HostEvent::JobRecovered {
                        job: name.to_string(),
                    },
                ),
                _ => {}
            }
        }
        self.table.set_pool(
            name,
            PoolEntry {
                jobs: pool.config.jobs.iter().map(|j| j.name.clone()).collect(),
                min: pool.min,
                max: pool.max,
                processes: pool
                    .processes
                    .iter()
                    .map(|(&pid, p)| ProcessEntry {
                        pid,
                        slots: p.slots.clone(),
                        started_ms: p.started_ms,
                        stopping: p.stop_requested.is_some(),
                        rss_bytes: p.usage.map(|(_, u)| u.rss_bytes),
                        cpu_permille: p.cpu_permille,
                    })
                    .collect(),
                failed: pool.crash.failed().map(str::to_string),
                exited: pool.exited.clone(),
            },
        );
    }
}

/// What the process's slots say, those it has claimed (a slot is the process's once it
/// wrote its pid there).
fn read_slots<'a>(
    stats: &'a StatsTable,
    pid: u32,
    process: &'a Process,
) -> impl Iterator<Item = stats::SlotSnapshot> + 'a {
    process
        .slots
        .iter()
        .filter_map(move |&slot| stats.read(slot).filter(|s| s.pid == pid))
}

/// A process's activity from its slots': busy when all are, partly when some are, idle
/// (for as long as the most recently busy one) when all are, else starting.
fn combined(activities: &[Activity]) -> Activity {
    let busy = activities.iter().filter(|a| **a == Activity::Busy).count();
    if busy > 0 {
        return if busy == activities.len() {
            Activity::Busy
        } else {
            Activity::Partly
        };
    }
    let idle = activities.iter().filter_map(|a| match a {
        Activity::Idle(d) => Some(*d),
        _ => None,
    });
    match idle.clone().count() == activities.len() {
        true => idle.min().map_or(Activity::Starting, Activity::Idle),
        false => Activity::Starting,
    }
}

/// Whether a process's memory may get it replaced. One that starts over the limit would be
/// replaced by another over it, and so on: a process is judged once it has taken a job, or,
/// when it does not say what it does, once it has run [`UNTESTED_GRACE`].
fn judged_by_memory(slot: Option<&stats::SlotSnapshot>, up: Duration) -> bool {
    match slot {
        Some(s) if s.reports => s.holds_job() || s.has_served(),
        _ => up >= UNTESTED_GRACE,
    }
}

impl Supervisor {
    /// Folds what live processes of groups last did into the job records, each tick: their
    /// slots keep only the last job's lastrun and lasterror, and the next job of another
    /// function would hide the one before.
    fn fold_groups(&mut self) {
        let mut merges = Vec::new();
        for (name, pool) in self
            .pools
            .iter_mut()
            .filter(|(_, p)| p.config.jobs.len() > 1)
        {
            for (&pid, p) in pool.processes.iter_mut() {
                for (i, &slot) in p.slots.iter().enumerate() {
                    let Some(snapshot) = self.stats.read(slot).filter(|s| s.pid == pid) else {
                        continue;
                    };
                    // Every finished job counts one: two jobs in one second are two changes.
                    let seen = (
                        (snapshot.jobs_done + snapshot.jobs_failed) as i64,
                        snapshot.lasterror,
                    );
                    if p.folded.get(i).is_some_and(|f| *f != seen) {
                        p.folded[i] = seen;
                        merges.push((name.clone(), p.jobs.clone(), snapshot));
                    }
                }
            }
        }
        if !merges.is_empty() {
            self.table.merge_slots(merges);
        }
    }
}

/// `lifetime` plus up to a tenth more, at random, so a fleet started together is not
/// recycled together.
fn with_splay(lifetime: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = f64::from(nanos % 10_000) / 100_000.0;
    lifetime + lifetime.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_judges_a_process_once_it_has_worked() {
        let table = StatsTable::create(1).unwrap();
        let w = table.writer(0).unwrap();
        w.assign(7, 1_000);
        w.set_state(ProcessState::Idle, 1_000);
        let idle = table.read(0).unwrap();
        let long = UNTESTED_GRACE * 10;
        // Found by a trial: a plugin worker that says it is idle was judged after 30 s
        // anyway, and replaced every 30 s when it starts over the limit.
        assert!(!judged_by_memory(Some(&idle), long));
        w.job_started(0, 2_000, "H:x:1");
        assert!(judged_by_memory(table.read(0).as_ref(), Duration::ZERO));
        w.job_finished(3_000, None);
        assert!(judged_by_memory(table.read(0).as_ref(), Duration::ZERO));
        // One that never says: after a while.
        w.assign(8, 1_000);
        let silent = table.read(0).unwrap();
        assert!(!silent.reports);
        assert!(!judged_by_memory(Some(&silent), Duration::from_secs(1)));
        assert!(judged_by_memory(Some(&silent), long));
        assert!(judged_by_memory(None, long));
    }
}

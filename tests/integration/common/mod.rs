//! Test fixtures shared by the integration tests: a real gearmand on a free loopback port,
//! bounded polling, and small job handlers.
//!
//! A test that needs gearmand calls `require_gearmand!()`. Where gearmand is not installed it
//! prints a notice and the test returns early; in CI (`CI` or `GEARDRIVER_REQUIRE_GEARMAND`
//! set) its absence fails the test instead.

#![allow(dead_code)]

pub mod console;
pub mod host;
pub mod http;
pub mod import;

use bytes::Bytes;
use geardriver::gearman::worker::{
    self, AssignedJob, JobFailure, JobHandler, WorkUpdates, WorkerConfig,
};
use geardriver::gearman::{Ability, ServerAddr};
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Finds gearmand: `$GEARMAND_BIN`, then `PATH`, then Debian's `/usr/sbin`.
pub fn gearmand_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("GEARMAND_BIN") {
        // An explicit choice: a path that is not there means "not installed".
        return Some(PathBuf::from(bin)).filter(|b| b.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("gearmand"))
        .find(|candidate| candidate.is_file())
}

pub fn gearmand_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GEARDRIVER_REQUIRE_GEARMAND").is_some()
}

/// Defines a test twice, `NAME::gearmand` and `NAME::builtin`: the body runs against a real
/// gearmand and against geardriver's built-in job server. Without gearmand (outside CI) the
/// first prints a notice and returns.
#[macro_export]
macro_rules! both_servers {
    ($(#[$meta:meta])* async fn $name:ident($server:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($server: common::JobServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gearmand() {
                if let Some(server) = common::JobServer::start(common::ServerKind::Gearmand) {
                    body(server).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn builtin() {
                let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
                body(server).await;
            }
        }
    };
}

/// Returns from the test (after a notice) when gearmand is missing outside CI; for tests
/// about gearmand itself.
#[macro_export]
macro_rules! require_gearmand {
    () => {
        match common::JobServer::start(common::ServerKind::Gearmand) {
            Some(gearmand) => gearmand,
            None => return,
        }
    };
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, the inode is the tenth field.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == "0A")
                .then(|| f.get(9).map(|i| i.to_string()))
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|link| {
            let link = link.to_string_lossy();
            inodes
                .iter()
                .any(|inode| link == format!("socket:[{inode}]").as_str())
        })
}

/// A loopback port nobody listens on right now, below the kernel's ephemeral range (32768
/// and up on Linux): a port the kernel handed out as ephemeral could be given again, before
/// the test's server binds it, to the local end of some test's outgoing connection (a host
/// then failed to start its console: "address in use"). Each call takes the next port of a
/// range this process starts in by its pid, so the tests of one run never share one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = u16::try_from(FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN)
}

/// Which job server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Gearmand,
    /// `geardriver server`, as a child process like gearmand.
    Builtin,
}

/// A job server child process on a free loopback port, stopped when dropped.
pub struct JobServer {
    pub kind: ServerKind,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Given to the server's command line as they are.
    extra_args: Vec<String>,
}

impl JobServer {
    /// Starts a server of `kind` on a free port; `None` (after a notice) for gearmand when it
    /// is not installed and not required.
    pub fn start(kind: ServerKind) -> Option<JobServer> {
        Self::start_with(kind, &[])
    }

    /// [`JobServer::start`] with more arguments for the server (both gearmand and
    /// `geardriver server` take `--job-retries=N`).
    pub fn start_with(kind: ServerKind, extra_args: &[&str]) -> Option<JobServer> {
        if kind == ServerKind::Gearmand && gearmand_binary().is_none() {
            if gearmand_required() {
                panic!("gearmand is required in CI but was not found (install gearman-job-server)");
            }
            notice("gearmand not found; skipping this test (install gearman-job-server)");
            return None;
        }
        for _ in 0..5 {
            let mut server = JobServer {
                kind,
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("{kind:?} did not start on any of 5 free ports");
    }

    /// Another server of the same kind.
    pub fn another(&self) -> JobServer {
        JobServer::start(self.kind).expect("a second server of a kind that started once")
    }

    fn spawn(&mut self) -> bool {
        let mut command = match self.kind {
            ServerKind::Gearmand => {
                let mut c = Command::new(gearmand_binary().expect("gearmand present"));
                c.arg("--listen=127.0.0.1")
                    .arg(format!("--port={}", self.port))
                    .arg("--log-file=none")
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("gearmand.pid").display()
                    ))
                    .arg("--threads=2");
                c
            }
            ServerKind::Builtin => {
                let mut c = geardriver();
                c.args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
                    .env("GEARDRIVER_LOG", "warn");
                c
            }
        };
        let child = command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the job server");
        let pid = child.id();
        self.child = Some(child);
        // Ours listening, not just anyone: two tests may be handed the same free port, and
        // the loser would otherwise share the winner's server.
        let ready = poll_until(Duration::from_secs(10), || listens_on(pid, self.port));
        if !ready
            || self
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .ok()
                .flatten()
                .is_some()
        {
            self.kill();
            return false;
        }
        true
    }

    pub fn addr(&self) -> ServerAddr {
        ServerAddr::new("127.0.0.1", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILLs the server (queued jobs are lost, connections drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with `signal`, waits for it to exit, and starts a new one on the
    /// same port with the same arguments.
    pub fn restart_after(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
            let _ = child.wait();
        }
        let ok = poll_until(Duration::from_secs(10), || self.spawn());
        assert!(
            ok,
            "{:?} did not come back on port {}",
            self.kind, self.port
        );
    }

    /// Kills the server and starts a new one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let ok = poll_until(Duration::from_secs(10), || self.spawn());
        assert!(
            ok,
            "{:?} did not come back on port {}",
            self.kind, self.port
        );
    }
}

impl Drop for JobServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The name most tests use for "the job server".
pub type Gearmand = JobServer;

/// Polls `check` every 20 ms until it is true or `limit` passes.
pub fn poll_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    blocking(|| {
        let deadline = Instant::now() + limit;
        loop {
            if check() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Runs blocking test code (polling, waiting for a child process) so that it does not stall
/// the tokio runtime it may be called from: inside a multi-threaded runtime the worker
/// thread's other tasks move elsewhere meanwhile (`block_in_place`).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Async version of [`poll_until`].
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job handler made from an async closure; see [`handler`].
pub struct FnHandler<F>(F);

/// Makes a job handler from an async closure (the bounds here let closures infer their
/// argument types).
pub fn handler<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(AssignedJob, WorkUpdates) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Bytes, JobFailure>> + Send,
{
    FnHandler(f)
}

impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(AssignedJob, WorkUpdates) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Bytes, JobFailure>> + Send,
{
    fn handle(
        &self,
        job: AssignedJob,
        updates: WorkUpdates,
    ) -> impl Future<Output = Result<Bytes, JobFailure>> + Send {
        (self.0)(job, updates)
    }
}

/// A worker loop running in a task, stopped (after its current job) when dropped.
pub struct RunningWorker {
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningWorker {
    /// Stops the worker and waits (bounded) for its loop to return.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("not stopped yet");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("worker loop returned after shutdown")
            .expect("worker task did not panic");
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RunningWorker {
    /// Runs the worker loop with `config` and `handler` in a task until `shutdown`.
    pub fn spawn<H: JobHandler + 'static>(
        config: WorkerConfig,
        handler: H,
        shutdown: CancellationToken,
    ) -> RunningWorker {
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            worker::run(&config, &handler, &token).await;
        });
        RunningWorker {
            shutdown,
            task: Some(task),
        }
    }
}

/// Starts our worker loop serving `functions` on `servers` with `handler`.
pub fn start_worker(
    servers: Vec<ServerAddr>,
    functions: &[&str],
    handler: impl JobHandler + 'static,
) -> RunningWorker {
    start_worker_with(
        servers,
        functions
            .iter()
            .map(|f| Ability::new(f.to_string()))
            .collect(),
        handler,
    )
}

pub fn start_worker_with(
    servers: Vec<ServerAddr>,
    abilities: Vec<Ability>,
    handler: impl JobHandler + 'static,
) -> RunningWorker {
    let mut config = WorkerConfig::new(servers, abilities);
    config.reconnect_max = Duration::from_millis(500);
    RunningWorker::spawn(config, handler, CancellationToken::new())
}

/// Says on the terminal why part of a test is skipped. Written to stderr directly: the test
/// harness captures `eprintln!` of a passing test, and a skip nobody sees hides a gap.
pub fn notice(message: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("NOTICE: {message}\n").as_bytes());
}

/// The geardriver binary under test.
pub fn geardriver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_geardriver"))
}

/// Writes `config` to `dir/c.toml` and runs `geardriver run` with it, which must refuse to
/// start; returns its exit code and stderr.
pub fn refused_start(dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = geardriver()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {config:?}: {stderr}");
    (out.status.code(), stderr)
}

/// A `gearman` CLI command, or `None` (after a notice) when gearman-tools is missing.
pub fn gearman_cli() -> Option<Command> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("gearman").is_file());
    if !found {
        if gearmand_required() {
            panic!("the gearman CLI is required in CI but was not found (install gearman-tools)");
        }
        notice("gearman CLI not found; skipping this part (install gearman-tools)");
        return None;
    }
    Some(Command::new("gearman"))
}

/// Submits one background job per line with the gearman CLI (`-b -N`); `false` (after a
/// notice) when the CLI is missing outside CI.
pub fn submit_lines(port: u16, function: &str, flags: &[&str], lines: &[String]) -> bool {
    let Some(mut cli) = gearman_cli() else {
        return false;
    };
    let mut child = cli
        .args([
            "-b",
            "-N",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-f",
            function,
        ])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = lines.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gearman -b: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the job server's `status` until `function`'s row satisfies `check` (a missing row
/// counts as all zeros).
pub async fn wait_for_status(
    addr: &ServerAddr,
    function: &str,
    check: impl Fn(&geardriver::gearman::FunctionStatus) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut admin) =
            geardriver::gearman::AdminClient::connect(addr, Duration::from_secs(5)).await
        {
            if let Ok(rows) = admin.status().await {
                let row = rows.into_iter().find(|r| r.function == function).unwrap_or(
                    geardriver::gearman::FunctionStatus {
                        function: function.to_string(),
                        total: 0,
                        running: 0,
                        available_workers: 0,
                    },
                );
                if check(&row) {
                    return true;
                }
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether Perl's Gearman::Worker is installed; `false` (after a notice) when it is not and
/// not required.
pub fn perl_gearman_available() -> bool {
    let ok = Command::new("perl")
        .args(["-MGearman::Worker", "-e", "1"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if gearmand_required() {
            panic!("Perl's Gearman::Worker is required in CI (install libgearman-client-perl)");
        }
        notice(
            "Perl's Gearman::Worker not found; skipping this part (install libgearman-client-perl)",
        );
    }
    ok
}

/// Runs one foreground job, bounded in time, and returns how it ended.
pub async fn outcome(
    client: &geardriver::gearman::Client,
    function: &str,
    data: &str,
) -> geardriver::gearman::JobOutcome {
    let request = geardriver::gearman::JobRequest::new(function.to_string(), data.to_string());
    tokio::time::timeout(Duration::from_secs(15), client.run(request))
        .await
        .expect("the job finished in time")
        .expect("the job ran")
}

/// A completed job's outcome with this result.
pub fn complete(result: &str) -> geardriver::gearman::JobOutcome {
    geardriver::gearman::JobOutcome::Complete(Bytes::from(result.to_string()))
}

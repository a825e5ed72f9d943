//! Job semantics as clients nobody here wrote see them: the `gearman` CLI, Perl's
//! Gearman::Client, PHP's pecl gearman (GearmanClient on libgearman), Python's pygearman and
//! npm's `gearman` on Node,
//! against a real host serving the built-in workers, through gearmand and the built-in server.
//! Each library is driven by a small script in `tests/interop/` that prints, one JSON line per
//! event, what the library reports. The tests are named after the defects of issue 11.
//!
//! What each library can report is written at the top of its script; the assertions ask of
//! each only what it can do: PHP's blocking `do*` calls never report warnings, and pygearman
//! cannot take two submissions of one unique id on one connection.

use crate::common;

use common::console::Console;
use common::host::Host;
use common::{JobServer, ServerKind, free_port, gearman_cli, gearmand_required, poll_until};
use serde_json::{Value, json};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// A client library, driven through its script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Library {
    Perl,
    Php,
    Python,
    Node,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The library's blocking one-job call.
    Do,
    /// All tasks submitted together on one connection.
    Set,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Do => "do",
            Mode::Set => "set",
        }
    }
}

impl Library {
    const ALL: [Library; 4] = [Library::Perl, Library::Php, Library::Python, Library::Node];

    /// The libraries installed here. A missing one fails the test in CI (`.ci/run` installs
    /// them all) and is skipped with a notice elsewhere.
    pub(crate) fn installed() -> Vec<Library> {
        Self::ALL.into_iter().filter(|l| l.available()).collect()
    }

    pub(crate) fn available(self) -> bool {
        let (program, args): (&str, &[&str]) = match self {
            Library::Perl => ("perl", &["-MGearman::Client", "-e", "1"]),
            Library::Php => (
                "php",
                &["-r", "exit(class_exists('GearmanClient') ? 0 : 1);"],
            ),
            Library::Python => ("python3", &["-c", "import gearman"]),
            Library::Node => ("node", &["-e", "require('gearman')"]),
        };
        let ok = Command::new(program)
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let install = match self {
                Library::Perl => "apt-get install libgearman-client-perl",
                Library::Php => "apt-get install php-cli php-gearman",
                Library::Python => "pip install pygearman",
                Library::Node => "npm ci --prefix tests/interop",
            };
            if gearmand_required() {
                panic!("{self:?}'s Gearman library is required in CI ({install})");
            }
            common::notice(&format!(
                "{self:?}'s Gearman library not found; skipping it ({install})"
            ));
        }
        ok
    }

    fn command(self) -> Command {
        let (program, script) = match self {
            Library::Perl => ("perl", "client.pl"),
            Library::Php => ("php", "client.php"),
            Library::Python => ("python3", "client.py"),
            Library::Node => ("node", "client.js"),
        };
        let mut command = Command::new(program);
        command.arg(format!(
            "{}/tests/interop/{script}",
            env!("CARGO_MANIFEST_DIR")
        ));
        command
    }

    /// Whether the library hands WORK_WARNING to its user in `mode`.
    pub(crate) fn reports_warnings(self, mode: Mode) -> bool {
        !(self == Library::Php && mode == Mode::Do)
    }

    /// Runs `tasks` in `mode` against the job server on `port`.
    pub(crate) fn run(self, port: u16, mode: Mode, exceptions: bool, tasks: &[Value]) -> Run {
        let spec = json!({
            "server": format!("127.0.0.1:{port}"),
            "exceptions": exceptions,
            "mode": mode.name(),
            "timeout_ms": LIMIT.as_millis() as u64,
            "tasks": tasks,
        });
        let mut command = self.command();
        command.arg(spec.to_string());
        let (code, stdout, stderr) = run_bounded(command, LIMIT + Duration::from_secs(10));
        let events = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect();
        Run {
            what: format!("{self:?} {} {spec}", mode.name()),
            code,
            events,
            stdout,
            stderr,
        }
    }
}

/// What one run of a client script reported.
pub(crate) struct Run {
    what: String,
    code: Option<i32>,
    events: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(&self, task: usize) -> impl Iterator<Item = &Value> {
        self.events
            .iter()
            .filter(move |e| e["task"].as_u64() == Some(task as u64))
    }

    fn kinds(&self, task: usize) -> Vec<String> {
        self.of(task)
            .map(|e| e["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    fn first(&self, task: usize, kind: &str) -> Option<&Value> {
        self.of(task).find(|e| e["event"] == kind)
    }

    /// The bytes of the task's first `kind` event, as text.
    fn text(&self, task: usize, kind: &str) -> Option<String> {
        let hex = self.first(task, kind)?["hex"].as_str()?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn millis(&self, task: usize, kind: &str) -> Option<u64> {
        self.first(task, kind)?["t_ms"].as_u64()
    }

    /// Asserts the run ended cleanly (no hang, no library error).
    pub(crate) fn finished(&self) -> &Self {
        assert!(
            self.code == Some(0) && self.events.iter().any(|e| e["done"] == true),
            "{self}"
        );
        self
    }

    /// Asserts task `task` failed (not completed), with `message` as its last warning where
    /// the library reports warnings, within `within` of the script's start.
    pub(crate) fn failed(&self, task: usize, message: Option<&str>, within: Duration) -> &Self {
        let kinds = self.kinds(task);
        assert!(
            kinds.contains(&"fail".to_string()) && !kinds.contains(&"complete".to_string()),
            "task {task} should fail: {self}"
        );
        if let Some(message) = message {
            let warning = self.text(task, "warning").unwrap_or_default();
            assert!(
                warning.starts_with(message),
                "task {task} warning {warning:?} should start with {message:?}: {self}"
            );
        }
        let at = self.millis(task, "fail").expect("t_ms");
        assert!(
            at <= within.as_millis() as u64,
            "task {task} failed after {at} ms: {self}"
        );
        self
    }

    pub(crate) fn completed(&self, task: usize, result: &str) -> &Self {
        assert_eq!(
            self.text(task, "complete").as_deref(),
            Some(result),
            "task {task}: {self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nexit {:?}\nstdout:\n{}stderr:\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `command`, killing it after `limit`; its exit code (None when killed), stdout, stderr.
fn run_bounded(command: Command, limit: Duration) -> (Option<i32>, String, String) {
    common::blocking(|| run_bounded_blocking(command, limit))
}

fn run_bounded_blocking(mut command: Command, limit: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, stdout.join().unwrap(), stderr.join().unwrap())
}

/// `gearman -f FUNCTION [flags] -- DATA`: exit code, stdout, stderr and how long it took.
pub(crate) fn gearman(
    port: u16,
    function: &str,
    flags: &[&str],
    data: &str,
) -> Option<(Option<i32>, String, String, Duration)> {
    let mut command = gearman_cli()?;
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-f", function])
        .args(flags)
        .args(["--", data]);
    let started = Instant::now();
    let (code, stdout, stderr) = run_bounded(command, LIMIT);
    Some((code, stdout, stderr, started.elapsed()))
}

pub(crate) fn task(function: &str, data: &str) -> Value {
    json!({"function": function, "data": data})
}

/// The jobs every test here serves.
const JOBS: &str = r#"
[[jobs]]
name = "echo"
worker = "echo"
min_processes = 2
max_processes = 2
[[jobs]]
name = "fail"
worker = "fail"
[[jobs]]
name = "panic"
worker = "panic"
[[jobs]]
name = "json"
worker = "echo"
decode = "json"
encode = "json"
[[jobs]]
name = "cmdfail"
command = ["sh", "-c", "cat >/dev/null; echo 'disk on fire' >&2; exit 3"]
[[jobs]]
name = "progress"
worker = "progress"
[[jobs]]
name = "nap"
worker = "sleep"
min_processes = 3
max_processes = 3
[[jobs]]
name = "slow"
worker = "sleep"
timeout = 1
[[jobs]]
name = "stuck"
worker = "block"
timeout = 1
[[jobs]]
name = "hold"
command = ["sh", "-c", "read gate; while [ ! -e \"$gate\" ]; do sleep 0.02; done"]
group = "ordered"
min_processes = 1
max_processes = 1
[[jobs]]
name = "ordered"
worker = "sleep"
group = "ordered"
min_processes = 1
max_processes = 1
"#;

/// A host serving [`JOBS`] on `server`, its console on a free port, every process up.
fn host(server: &JobServer) -> (Host, u16) {
    let console = free_port();
    let host = Host::start(
        &[server.addr().to_string()],
        "interval = 0",
        &format!("[console]\nlisten = \"127.0.0.1:{console}\"\n{JOBS}"),
    );
    host.wait_workers("echo", 2, LIMIT);
    host.wait_workers("nap", 3, LIMIT);
    host.wait_workers("ordered", 1, LIMIT);
    for job in [
        "fail", "panic", "json", "cmdfail", "progress", "slow", "stuck",
    ] {
        host.wait_workers(job, 1, LIMIT);
    }
    // Every process has registered with the job server.
    assert!(poll_until(LIMIT, || workers_registered(server, 13)));
    (host, console)
}

/// Whether at least `n` worker connections are registered with the job server.
fn workers_registered(server: &JobServer, n: usize) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_geardriver"))
        .args(["admin", "--server", &server.addr().to_string(), "workers"])
        .output();
    out.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(':') && !l.trim_end().ends_with(':'))
            .count()
            >= n
    })
}

// Issue 11, defect 1: the worker reported failures as WORK_EXCEPTION, which gearmand relays
// to clients that did not ask for exceptions as a WORK_FAIL with a trailing NUL: the gearman
// CLI waited forever, Perl died, PHP hung. Now every failure (an `Err`, a panic, a decode
// error, a command's non-zero exit) is WORK_WARNING with the message, then WORK_FAIL.
both_servers! {
    async fn failed_jobs_reach_every_client_as_failures_with_their_message(server) {
        let (_host, _console) = host(&server);
        let port = server.port;
        let failing = [
            (task("fail", "boom"), "fail: boom"),
            (task("panic", "boom"), "panic: boom"),
            (task("json", "{not json"), "json: invalid input"),
            (task("cmdfail", "x"), "sh failed (exit status 3): disk on fire"),
        ];
        let mut tasks: Vec<Value> = failing.iter().map(|(t, _)| t.clone()).collect();
        tasks.push(task("echo", "still serving"));
        for library in Library::installed() {
            for mode in [Mode::Do, Mode::Set] {
                for exceptions in [false, true] {
                    let run = library.run(port, mode, exceptions, &tasks);
                    run.finished();
                    for (i, (_, message)) in failing.iter().enumerate() {
                        let message = library.reports_warnings(mode).then_some(*message);
                        run.failed(i, message, Duration::from_secs(3));
                    }
                    run.completed(failing.len(), "still serving");
                }
            }
        }
        if let Some((code, _, stderr, took)) = gearman(port, "fail", &[], "boom") {
            assert_ne!(code, Some(0), "{stderr}");
            assert!(code.is_some(), "the gearman CLI hung: {stderr}");
            assert!(stderr.contains("fail: boom"), "{stderr}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
    }
}

// Issue 11, defect 2: a job's `timeout` against gearmand looped forever (the killed process's
// job was re-queued, 277 kill/respawn cycles in 10 minutes, the client never answered); the
// built-in server failed it without the message. Now the process that holds the job fails
// it itself (WORK_WARNING "timeout: …", WORK_FAIL) and exits to be replaced.
both_servers! {
    async fn a_timeout_ends_the_job_once_and_names_the_timeout(server) {
        let (host, console) = host(&server);
        let port = server.port;
        // `slow` yields (the job is dropped at its deadline); `stuck` blocks its thread (the
        // process's watchdog fails it half a second later and exits).
        // The two functions (a process each) in parallel, each library in turn.
        common::blocking(|| {
            std::thread::scope(|scope| {
                for function in ["slow", "stuck"] {
                    let host = &host;
                    scope.spawn(move || {
                        for library in Library::installed() {
                            let before = host.workers(function);
                            let run = library.run(port, Mode::Do, false, &[task(function, "5000")]);
                            run.finished();
                            let message = library
                                .reports_warnings(Mode::Do)
                                .then_some("timeout: the job ran longer than 1s");
                            // Within timeout + 2 s, counted from the script's start.
                            run.failed(0, message, Duration::from_secs(3));
                            // The process was replaced.
                            assert!(
                                poll_until(LIMIT, || {
                                    let now = host.workers(function);
                                    now.len() == 1 && now != before
                                }),
                                "{function}: {before:?} was not replaced"
                            );
                        }
                        if let Some((code, _, stderr, took)) = gearman(port, function, &[], "5000") {
                            assert!(code.is_some() && code != Some(0), "{function}: {code:?} {stderr}");
                            assert!(stderr.contains("timeout: the job ran longer than 1s"), "{stderr}");
                            assert!(took < Duration::from_secs(4), "{function}: {took:?}");
                        }
                    });
                }
            })
        });
        // Not run again: nothing of either function is queued or running afterwards.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status = Command::new(env!("CARGO_BIN_EXE_geardriver"))
            .args(["admin", "--server", &server.addr().to_string(), "status"])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        for function in ["slow", "stuck"] {
            assert!(
                status.lines().any(|l| l.starts_with(&format!("{function}\t0\t0\t"))),
                "{function} ran again:\n{status}"
            );
        }
        // lasterror records it; a timeout is not a crash loop.
        let mut console = Console::connect(console);
        for function in ["slow", "stuck"] {
            let shown = console.cmd(&format!("show {function}"));
            assert!(shown.contains("ERROR: timeout: the job ran longer than 1s"), "{shown}");
            assert!(!shown.contains("FAILED"), "{shown}");
        }
        host.wait_log("[stuck] Exited with status 124", LIMIT);
    }
}

// Issue 11, defect 3: a payload that kills its process was handed out again and again; those
// deaths counted toward the crash loop, so the function was marked FAILED and the client
// hung. Now deaths while holding a job do not count, and the job server gives up on the job
// after its retries (gearmand `--job-retries`, the built-in server's `job_retries`).
both_servers! {
    async fn a_poison_job_fails_after_its_retries_and_its_function_keeps_serving(server) {
        // More hand-outs than the crash loop allows quick deaths (5).
        let server = JobServer::start_with(server.kind, &["--job-retries=6"]).unwrap();
        let console = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{console}\"\n\
                 [[jobs]]\nname = \"poison\"\n\
                 command = [\"sh\", \"-c\", \"read x; if [ \\\"$x\\\" = poison ]; then kill -ALRM $PPID; sleep 1; fi; printf %s \\\"$x\\\"\"]\n"
            ),
        );
        host.wait_workers("poison", 1, LIMIT);
        let port = server.port;
        for library in Library::installed() {
            let run = library.run(port, Mode::Do, false, &[task("poison", "poison")]);
            run.finished();
            let message = (server.kind == ServerKind::Builtin && library.reports_warnings(Mode::Do))
                .then_some("job_retries: the job was handed out 6 times");
            run.failed(0, message, Duration::from_secs(15));
            library
                .run(port, Mode::Do, false, &[task("poison", "healthy")])
                .finished()
                .completed(0, "healthy");
        }
        if let Some((code, _, stderr, _)) = gearman(port, "poison", &[], "poison") {
            assert!(code.is_some() && code != Some(0), "{code:?} {stderr}");
        }
        let mut console = Console::connect(console);
        let shown = console.cmd("show poison");
        assert!(!shown.contains("FAILED"), "{shown}");
        assert!(
            shown.contains("ERROR: the process died holding a job: exited with status"),
            "the death is the job's last error: {shown}"
        );
        assert!(
            host.log().contains("died holding a job"),
            "the deaths were seen:\n{}",
            host.log()
        );
    }
}

// Issue 11, defect 4 (built-in server): PHP's addTask loop and Perl's task set submit one unique
// id several times on one connection and wait for a result per task. (pygearman cannot: it
// maps a handle to one request, see tests/interop/client.py.)
both_servers! {
    async fn the_same_unique_submitted_on_one_connection_completes_every_task(server) {
        let (_host, _console) = host(&server);
        let tasks: Vec<Value> = (0..3)
            .map(|_| json!({"function": "nap", "data": "300", "unique": "same"}))
            .collect();
        for library in Library::installed() {
            if library == Library::Python {
                continue;
            }
            let run = library.run(server.port, Mode::Set, false, &tasks);
            run.finished();
            for i in 0..tasks.len() {
                run.completed(i, "slept 300");
            }
        }
    }
}

// Results, progress and priorities as each library sees them.
both_servers! {
    async fn results_progress_and_priorities_reach_every_client(server) {
        let (_host, _console) = host(&server);
        let port = server.port;
        let text = "h\u{e9}llo\nw\u{f6}rld \u{2603}";
        for library in Library::installed() {
            for mode in [Mode::Do, Mode::Set] {
                let run = library.run(port, mode, false, &[task("echo", text), task("progress", "payload")]);
                run.finished().completed(0, text);
                // PHP's blocking call puts WORK_DATA in front of the result and reports
                // nothing else (libgearman's do()).
                if library == Library::Php && mode == Mode::Do {
                    run.completed(1, "datapayload");
                    continue;
                }
                run.completed(1, "payload");
                let status = run.first(1, "status").unwrap_or_else(|| panic!("status: {run}"));
                assert_eq!(status["denominator"], 2, "{run}");
                assert_eq!(run.text(1, "data").as_deref(), Some("data"), "{run}");
                assert_eq!(run.text(1, "warning").as_deref(), Some("warning"), "{run}");
            }
            // Priorities: while the group's one process is busy (holding until the test
            // opens its gate), low, normal and high jobs queue up; they run high first.
            let gates = tempfile::tempdir().unwrap();
            let gate = gates.path().join("open");
            let Some((Some(0), ..)) = gearman(port, "hold", &["-b"], &gate.display().to_string()) else {
                panic!("could not submit the holding job")
            };
            assert!(common::wait_for_status(&server.addr(), "hold", |s| s.running == 1).await);
            // Each takes a moment, so that every library sees the completions apart.
            let ordered: Vec<Value> = ["low", "normal", "high"]
                .iter()
                .map(|priority| json!({"function": "ordered", "data": "150", "priority": priority}))
                .collect();
            let run = std::thread::scope(|scope| {
                let run = scope.spawn(|| library.run(port, Mode::Set, false, &ordered));
                // All three queued: the gate opens.
                let queued = common::blocking(|| {
                    tokio::runtime::Handle::current().block_on(common::wait_for_status(
                        &server.addr(),
                        "ordered",
                        |s| s.total == 3,
                    ))
                });
                std::fs::write(&gate, "").unwrap();
                assert!(queued, "{library:?} did not queue the three jobs");
                run.join().unwrap()
            });
            run.finished();
            let order: Vec<String> = run
                .events
                .iter()
                .filter(|e| e["event"] == "complete")
                .map(|e| e["task"].to_string())
                .collect();
            assert_eq!(order, ["2", "1", "0"], "high, normal, low: {run}");
        }
        if let Some((code, stdout, stderr, _)) = gearman(port, "echo", &[], text) {
            assert_eq!(code, Some(0), "{stderr}");
            assert_eq!(stdout.trim_end_matches('\n'), text);
        }
        // The CLI writes WORK_DATA and the result to stdout, progress after them, the
        // warning to stderr.
        if let Some((code, stdout, stderr, _)) = gearman(port, "progress", &[], "payload") {
            assert_eq!(code, Some(0), "{stderr}");
            assert!(stdout.starts_with("datapayload"), "{stdout}");
            assert!(stdout.contains("50% Complete"), "{stdout}");
            assert!(stderr.contains("warning"), "{stderr}");
        }
    }
}

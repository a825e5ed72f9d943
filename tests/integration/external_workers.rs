//! Workers that are not plugins, and the limits on worker processes, through a real host:
//! commands run per job, a long-running Perl program using a real Gearman library, timeouts,
//! recycling, and a user's own binary.

use crate::common;

use common::console::Console;
use common::host::{Host, alive};
use common::{complete, free_port, poll_until};
use geardriver::gearman::{Client, ClientOptions, JobOutcome, JobRequest, ServerAddr};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

async fn run(addr: &ServerAddr, function: &str, data: &str) -> JobOutcome {
    let client = Client::new(vec![addr.clone()], ClientOptions::default()).unwrap();
    common::outcome(&client, function, data).await
}

// Issue 12, finding 6: a command's stderr was dropped when it succeeded, and its stdout was
// buffered whole before the size cap was checked.
both_servers! {
    async fn a_commands_stderr_is_logged_when_it_succeeds_and_its_output_is_capped_as_read(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"chatty\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo note one >&2; printf 'last, no newline' >&2; printf result\"]\n\
             [[jobs]]\nname = \"flood\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; exec yes\"]\n",
        );
        host.wait_workers("chatty", 1, LIMIT);
        let worker = host.wait_workers("flood", 1, LIMIT)[0];
        assert_eq!(run(&server.addr(), "chatty", "x").await, complete("result"));
        host.wait_log("[chatty] STDERR: note one", LIMIT);
        host.wait_log("[chatty] STDERR: last, no newline", LIMIT);
        // `yes` never stops: the cap ends it, without the whole output in memory first.
        let flooded = run(&server.addr(), "flood", "x").await;
        let message = flooded.failure_message().cloned().unwrap_or_default();
        assert!(message.starts_with(b"\"sh\" wrote more than 67108864 bytes"), "{flooded:?}");
        let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{worker}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap();
        assert!(rss_kb < 200_000, "the worker peaked at {rss_kb} kB");
        assert!(poll_until(LIMIT, || common::host::children_of(worker).is_empty()), "yes was killed");
    }
}

both_servers! {
    async fn commands_run_per_job_with_the_payload_on_stdin(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"shout\"\ncommand = [\"tr\", \"a-z\", \"A-Z\"]\n\
             [[jobs]]\nname = \"upper\"\ncommand = [\"python3\", \"workers/upper.py\"]\n\
             [[jobs]]\nname = \"greeting\"\ncommand = [\"sh\", \"-c\", \"printf '%s, ' \\\"$GREETING\\\"; cat\"]\nenv = { GREETING = \"hi\" }\n\
             [[jobs]]\nname = \"broken\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo 'disk on fire' >&2; exit 3\"]\n\
             [[jobs]]\nname = \"quoting\"\ncommand = [\"printf\", \"%s|\", \"a b\", \"$HOME\", \";ls\"]\n\
             [[jobs]]\nname = \"missing\"\ncommand = [\"/nonexistent/program\"]\n",
        );
        for job in ["shout", "upper", "greeting", "broken", "quoting", "missing"] {
            host.wait_workers(job, 1, LIMIT);
        }
        let addr = gearmand.addr();
        assert_eq!(
            run(&addr, "shout", "quiet please").await,
            complete("QUIET PLEASE")
        );
        assert_eq!(
            run(&addr, "upper", "from python").await,
            complete("FROM PYTHON")
        );
        assert_eq!(run(&addr, "greeting", "world").await, complete("hi, world"));
        // A non-zero exit fails the job with the command's stderr.
        assert_eq!(
            run(&addr, "broken", "x").await,
            JobOutcome::failed_with("sh failed (exit status 3): disk on fire")
        );
        assert_eq!(
            run(&addr, "upper", "").await,
            JobOutcome::failed_with("python3 failed (exit status 1): upper: the workload is empty")
        );
        // argv is executed directly: no shell expands or splits anything.
        assert_eq!(run(&addr, "quoting", "").await, complete("a b|$HOME|;ls|"));
        let missing = run(&addr, "missing", "x").await;
        let Some(message) = missing.failure_message() else {
            panic!("{missing:?}")
        };
        assert!(
            message.starts_with(b"cannot run \"/nonexistent/program\""),
            "{missing:?}"
        );
        // The worker processes survived all of it.
        for job in ["broken", "missing"] {
            assert_eq!(host.workers(job).len(), 1);
        }
        assert_eq!(run(&addr, "shout", "still").await, complete("STILL"));
    }
}

both_servers! {
    async fn a_perl_program_speaking_gearman_is_supervised(gearmand) {
        if !common::perl_gearman_available() {
            return;
        }
        let mut host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"perl_reverse\"\nprogram = [\"perl\", \"workers/reverse_worker.pl\"]\nmin_processes = 2\nmax_processes = 2\n",
        );
        let pids = host.wait_workers("perl_reverse", 2, LIMIT);
        host.wait_log(
            &format!(
                "({}) [perl_reverse] STDOUT: serving perl_reverse on {}",
                pids[0],
                gearmand.addr()
            ),
            LIMIT,
        );
        assert!(
            common::wait_for_status(&gearmand.addr(), "perl_reverse", |s| s.available_workers
                == 2)
            .await
        );
        assert_eq!(
            run(&gearmand.addr(), "perl_reverse", "stressed").await,
            complete("desserts")
        );
        // A killed program is replaced like any worker.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pids[0] as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert!(poll_until(LIMIT, || {
            let now = host.workers("perl_reverse");
            now.len() == 2 && !now.contains(&pids[0])
        }));
        assert_eq!(
            run(&gearmand.addr(), "perl_reverse", "live").await,
            complete("evil")
        );
        // On SIGTERM the host stops the programs and exits 0. (How a program takes SIGTERM is its
        // own business: Gearman::Worker 2.004 sometimes dies of it instead of running the
        // script's handler, so the exit status is not checked.)
        let programs = host.workers("perl_reverse");
        host.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(host.wait_exit(LIMIT).success());
        assert!(
            programs.iter().all(|&pid| !alive(pid)),
            "no program outlives the host"
        );
        let log = host.log();
        for pid in programs {
            assert!(
                log.contains(&format!("({pid}) [perl_reverse] Exited with status ")),
                "{log}"
            );
        }
    }
}

both_servers! {
    async fn a_job_overrunning_its_timeout_ends_and_its_process_is_replaced(gearmand) {
        let port = free_port();
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"slow\"\nworker = \"sleep\"\ntimeout = 1\n\
                 [[jobs]]\nname = \"slowcmd\"\ncommand = [\"sh\", \"-c\", \"sleep 30; echo done\"]\ntimeout = 1\n"
            ),
        );
        let stuck = host.wait_workers("slow", 1, LIMIT)[0];
        let client = Client::new(vec![gearmand.addr()], ClientOptions::default()).unwrap();
        client
            .submit(JobRequest::new("slow", "60000").background())
            .await
            .unwrap();
        // The process ends the job itself, tells the job server, and exits to be replaced.
        assert!(
            poll_until(LIMIT, || !alive(stuck)),
            "the overrunning process went"
        );
        host.wait_log(&format!("({stuck}) [slow] Exited with status 0"), LIMIT);
        let replacement = host.wait_workers("slow", 1, LIMIT);
        assert_ne!(replacement, vec![stuck]);
        let mut console = Console::connect(port);
        let status = console.cmd("show slow");
        assert!(
            status.contains("ERROR: timeout: the job ran longer than 1s"),
            "{status}"
        );
        assert!(
            !status.contains("FAILED"),
            "a timeout is not a crash loop: {status}"
        );

        // A command that overruns goes with its worker process, and so does what it started
        // (the shell's `sleep`; issue 11's timeout left it running).
        let worker = host.wait_workers("slowcmd", 1, LIMIT)[0];
        client
            .submit(JobRequest::new("slowcmd", "x").background())
            .await
            .unwrap();
        let mut tree = Vec::new();
        assert!(poll_until(LIMIT, || {
            tree = common::host::children_of(worker);
            if let Some(&shell) = tree.first() {
                tree.extend(common::host::children_of(shell));
            }
            tree.len() == 2
        }));
        assert!(
            poll_until(LIMIT, || !alive(worker) && tree.iter().all(|&p| !alive(p))),
            "worker {worker} and command tree {tree:?} killed"
        );
    }
}

both_servers! {
    async fn processes_are_recycled_after_max_jobs_and_max_lifetime(gearmand) {
        // `echo $PPID` from the command's shell is the worker process's pid.
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"whoami\"\ncommand = [\"sh\", \"-c\", \"printf %s $PPID\"]\nmax_jobs = 3\n\
             [[jobs]]\nname = \"short_lived\"\nworker = \"echo\"\nmax_lifetime = 1\n",
        );
        host.wait_workers("whoami", 1, LIMIT);
        let mut pids = Vec::new();
        for _ in 0..7 {
            let JobOutcome::Complete(pid) = run(&gearmand.addr(), "whoami", "").await else {
                panic!()
            };
            pids.push(String::from_utf8_lossy(&pid).into_owned());
        }
        assert_eq!(pids[0], pids[1]);
        assert_eq!(pids[1], pids[2]);
        assert_ne!(pids[2], pids[3], "a new process after 3 jobs: {pids:?}");
        assert_eq!(pids[3], pids[5]);
        assert_ne!(pids[5], pids[6], "{pids:?}");
        host.wait_log("max_jobs reached; exiting to be replaced", LIMIT);
        assert!(
            !host.log().contains("giving up"),
            "recycling is not a crash"
        );

        let first = host.wait_workers("short_lived", 1, LIMIT)[0];
        assert!(poll_until(Duration::from_secs(5), || {
            let now = host.workers("short_lived");
            now.len() == 1 && now[0] != first
        }));
        host.wait_log(
            &format!("({first}) [short_lived] Exited with status 0"),
            LIMIT,
        );
        host.wait_log("max_lifetime reached; exiting to be replaced", LIMIT);
        assert_eq!(
            run(&gearmand.addr(), "short_lived", "still served").await,
            complete("still served")
        );
    }
}

both_servers! {
    async fn a_users_own_binary_is_a_complete_host(gearmand) {
        // Build the example crate with the same cargo and profile as these tests.
        let root = env!("CARGO_MANIFEST_DIR");
        let mut build = std::process::Command::new(env!("CARGO"));
        build.current_dir(root).args(["build", "-p", "custom-host"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let built = tokio::task::spawn_blocking(move || build.output().unwrap())
            .await
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let binary =
            std::path::Path::new(env!("CARGO_BIN_EXE_geardriver")).with_file_name("custom-host");
        assert!(binary.is_file(), "{}", binary.display());

        let (_dir, config) = common::host::config_dir(
                &[gearmand.addr().to_string()],
                "interval = 0",
                "[[jobs]]\nname = \"greet\"\nworker = \"greet\"\ndecode = \"json\"\nencode = \"json\"\n\
                 [[jobs]]\nname = \"rev\"\nworker = \"reverse\"\n",
        );
        let check = std::process::Command::new(&binary)
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        assert!(String::from_utf8_lossy(&check.stdout).contains("worker greet"));
        let mut host = std::process::Command::new(&binary)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _guard = scopeguard(host.id());
        assert_eq!(
            run(&gearmand.addr(), "greet", r#"{"name": "Ada"}"#).await,
            complete(r#"{"greeting":"hello, Ada"}"#)
        );
        assert_eq!(
            run(&gearmand.addr(), "greet", r#"{"name": ""}"#).await,
            JobOutcome::failed_with("greet: the name is empty")
        );
        assert_eq!(
            run(&gearmand.addr(), "rev", "abc").await,
            complete("cba"),
            "the built-ins are there too"
        );
        // Its submit subcommand works as geardriver's does.
        let submit = std::process::Command::new(&binary)
            .args([
                "submit",
                "--server",
                &gearmand.addr().to_string(),
                "greet",
                r#"{"name":"Bob"}"#,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&submit.stdout),
            r#"{"greeting":"hello, Bob"}"#
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(host.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = host.wait().unwrap();
        assert!(status.success());
    }
}

/// Kills the process with `pid` (and it alone) if the test ends early.
fn scopeguard(pid: u32) -> impl Drop {
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    Guard(pid)
}

async fn submit_background(addr: &ServerAddr, function: &str, data: &str, count: usize) {
    let client = Client::new(vec![addr.clone()], ClientOptions::default()).unwrap();
    for _ in 0..count {
        client
            .submit(JobRequest::new(function.to_string(), data.to_string()).background())
            .await
            .unwrap();
    }
}

// Issue 12, finding 5: `program` workers were never autoscaled and ignored `min_spare` (4 jobs
// waiting, max 3: stayed at 1). A program that says nothing of what it does is guessed busy
// while its jobs wait, and idle since they last waited.
both_servers! {
    async fn a_program_that_says_nothing_is_scaled_with_its_queue(server) {
        if !common::perl_gearman_available() {
            return;
        }
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0.5",
            "[[jobs]]\nname = \"slow\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
             min_processes = 1\nmax_processes = 3\nmax_idle_time = 1\n",
        );
        host.wait_workers("slow", 1, LIMIT);
        submit_background(&server.addr(), "slow", "2000", 4).await;
        host.wait_workers("slow", 3, LIMIT);
        host.wait_log("[slow] scale up: jobs wait and every process is busy", LIMIT);
        assert!(common::wait_for_status(&server.addr(), "slow", |s| s.total == 0).await);
        host.wait_workers("slow", 1, LIMIT);
        host.wait_log("[slow] scale down: idle for max_idle_time while nothing waits", LIMIT);
    }
}

// Issue 12, finding 5: the scoreboard showed programs `S 0` forever and lastrun stayed 1970.
// A program that writes status lines to $GEARDRIVER_STATUS_FD is known exactly: busy in the
// scoreboard, its runs counted, lastrun set, and `min_spare` kept beside it.
both_servers! {
    async fn a_program_that_reports_is_a_full_citizen(server) {
        if !common::perl_gearman_available() {
            return;
        }
        let port = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0.5",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"told\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
                 env = {{ STATUS_LINES = \"1\" }}\nmin_processes = 1\nmax_processes = 3\nmin_spare = 1\n"
            ),
        );
        let first = host.wait_workers("told", 1, LIMIT)[0];
        assert!(poll_until(LIMIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
        let mut console = Console::connect(port);
        let state_of = |console: &mut Console, pid: u32| -> Option<(String, u64)> {
            console.lines("scoreboard").iter().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f[0] == pid.to_string()).then(|| (f[2].to_string(), f[3].parse().unwrap()))
            })
        };
        assert!(poll_until(LIMIT, || state_of(&mut console, first) == Some(("_".into(), 0))));
        submit_background(&server.addr(), "told", "1500", 1).await;
        assert!(
            poll_until(LIMIT, || state_of(&mut console, first) == Some(("B".into(), 0))),
            "{:?}",
            console.lines("scoreboard")
        );
        // Busy, it leaves no spare: one more starts.
        host.wait_workers("told", 2, LIMIT);
        assert!(
            poll_until(LIMIT, || state_of(&mut console, first) == Some(("_".into(), 1))),
            "{:?}",
            console.lines("scoreboard")
        );
        let status = console.lines("status");
        let row = status.iter().find(|l| l.starts_with("told ")).unwrap();
        let lastrun = row.split_whitespace().nth(4).unwrap();
        assert_ne!(lastrun, "1970-01-01T00:00:00", "lastrun is set: {row}");
    }
}

// Issue 12, finding 10: a job removed by a reload left its busy process finishing the job with
// no timeout enforced. The process finishes its job, but within the job's timeout.
both_servers! {
    async fn a_removed_jobs_busy_process_still_keeps_its_timeout(server) {
        let servers = [server.addr().to_string()];
        let jobs = |extra: &str| format!(
            "[[jobs]]\nname = \"stay\"\nworker = \"echo\"\n{extra}"
        );
        let host = Host::start(
            &servers,
            "interval = 0",
            &jobs("[[jobs]]\nname = \"gone\"\nworker = \"sleep\"\ntimeout = 2\n"),
        );
        let busy = host.wait_workers("gone", 1, LIMIT)[0];
        let client = Client::new(vec![server.addr()], ClientOptions::default()).unwrap();
        let job = client.submit(JobRequest::new("gone", "60000")).await.unwrap();
        assert!(common::wait_for_status(&server.addr(), "gone", |s| s.running == 1).await);
        host.rewrite_config(&servers, "interval = 0", &jobs(""));
        host.signal(nix::sys::signal::Signal::SIGHUP);
        host.wait_log("config reloaded", LIMIT);
        let outcome = tokio::time::timeout(LIMIT, job.wait()).await.unwrap().unwrap();
        assert_eq!(
            outcome.failure_message().map(|m| String::from_utf8_lossy(m).into_owned()).as_deref(),
            Some("timeout: the job ran longer than 2s"),
            "{outcome:?}"
        );
        assert!(poll_until(LIMIT, || !alive(busy)), "the removed job's process went");
        assert_eq!(run(&server.addr(), "stay", "x").await, complete("x"));
    }
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// The program a keeper runs: its one child.
fn program_of(keeper: u32) -> u32 {
    let mut program = Vec::new();
    assert!(poll_until(LIMIT, || {
        program = common::host::children_of(keeper);
        program.len() == 1
    }));
    program[0]
}

// Found trying issue 12's keeper: a program's helper that detached (`setsid`) kept the status
// pipe open, so when the program died its keeper waited forever: no exit, no replacement,
// the job's queue unserved. A keeper ends with its program.
both_servers! {
    async fn a_keeper_ends_with_its_program_whatever_a_helper_holds(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"detach\"\nprogram = [\"sh\", \"-c\", \"setsid sleep 1177 >/dev/null 2>&1 & exec sleep 1000\"]\n",
        );
        let keeper = host.wait_workers("detach", 1, LIMIT)[0];
        let program = program_of(keeper);
        signal(program, nix::sys::signal::Signal::SIGKILL);
        let replaced = poll_until(LIMIT, || {
            let now = host.workers("detach");
            now.len() == 1 && now[0] != keeper
        });
        // The detached helper escaped every group (it asked to); end it here.
        let _ = std::process::Command::new("pkill").args(["-f", "^sleep 1177$"]).status();
        assert!(replaced, "the keeper outlived its program\n{}", host.log());
        host.wait_log(&format!("({keeper}) [detach] Exited with status 137 (killed by SIGKILL)"), LIMIT);
    }
}

// Found trying issue 12's keeper: once the host was SIGKILLed, a program's stdout was a pipe
// nobody read, so the first `print` of a program finishing its job killed it (SIGPIPE) and
// the job was lost. The keeper relays the program's output, and keeps reading. (gearmand
// only: the built-in server dies with the host, and the job with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_finishes_its_job_and_prints_after_the_host_is_killed() {
    let gearmand = require_gearmand!();
    if !common::perl_gearman_available() {
        return;
    }
    let port = free_port();
    let host = Host::start(
        &[gearmand.addr().to_string()],
        "interval = 0\nshutdown_timeout = 10",
        &format!(
            "[console]\nlisten = \"127.0.0.1:{port}\"\n\
             [[jobs]]\nname = \"printer\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
             env = {{ STATUS_LINES = \"1\" }}\n"
        ),
    );
    host.wait_workers("printer", 1, LIMIT);
    assert!(
        common::wait_for_status(&gearmand.addr(), "printer", |s| s.available_workers == 1).await
    );
    assert!(poll_until(LIMIT, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let mut console = Console::connect(port);
    let client = Client::new(vec![gearmand.addr()], ClientOptions::default()).unwrap();
    let job = client
        .submit(JobRequest::new("printer", "1500"))
        .await
        .unwrap();
    // In the job (its status line says so), not merely assigned it: a program told to stop
    // between the two leaves the job to the job server, for the next worker.
    assert!(poll_until(LIMIT, || console
        .lines("scoreboard")
        .iter()
        .any(|line| line.split_whitespace().nth(2) == Some("B"))));
    signal(host.pid(), nix::sys::signal::Signal::SIGKILL);
    let outcome = tokio::time::timeout(LIMIT, job.wait())
        .await
        .expect("the job ended")
        .unwrap();
    assert_eq!(outcome, complete("slept 1500"));
}

// Found trying issue 12's keeper: `killall -HUP geardriver` (the host's reload) killed every
// program's keeper, and its program with it; workers ignore SIGHUP and SIGUSR1, keepers too.
both_servers! {
    async fn a_keeper_ignores_the_hosts_signals(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"calm\"\nprogram = [\"sleep\", \"1000\"]\n",
        );
        let keeper = host.wait_workers("calm", 1, LIMIT)[0];
        let program = program_of(keeper);
        signal(keeper, nix::sys::signal::Signal::SIGHUP);
        signal(keeper, nix::sys::signal::Signal::SIGUSR1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(alive(keeper) && alive(program), "{}", host.log());
        assert_eq!(host.workers("calm"), vec![keeper]);
    }
}

// Found trying issue 12's keeper: `max_lifetime` on a program was accepted and did nothing.
both_servers! {
    async fn a_program_is_recycled_after_max_lifetime(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"aging\"\nprogram = [\"sleep\", \"1000\"]\nmax_lifetime = 1\n",
        );
        let first = host.wait_workers("aging", 1, LIMIT)[0];
        assert!(poll_until(LIMIT, || {
            let now = host.workers("aging");
            now.len() == 1 && now[0] != first
        }), "{}", host.log());
        host.wait_log("max_lifetime reached; asking the program to stop", LIMIT);
    }
}

// Found trying issue 12's keeper: when the host died, a program got SIGTERM twice (the
// parent-death signal, then the keeper's own check), and many take a second TERM as "quit
// now". It hears of the stop once.
both_servers! {
    async fn a_program_hears_of_its_hosts_death_once(server) {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("terms");
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0\nshutdown_timeout = 2",
            &format!(
                "[[jobs]]\nname = \"counts\"\nprogram = [\"perl\", \"-e\", \"sub note {{ open my $f, '>>', '{0}'; print $f qq($_[0]\\\\n) }} $SIG{{TERM}} = sub {{ note('TERM') }}; note('ready'); sleep 1 while 1\"]\n",
                trace.display()
            ),
        );
        let keeper = host.wait_workers("counts", 1, LIMIT)[0];
        let group = common::host::groups_of(&[keeper]);
        assert!(poll_until(LIMIT, || std::fs::read_to_string(&trace).is_ok_and(|t| t == "ready\n")));
        signal(host.pid(), nix::sys::signal::Signal::SIGKILL);
        // It ignores the TERM, so its group goes after shutdown_timeout.
        assert!(poll_until(LIMIT, || common::host::members_of(&group).is_empty()));
        assert_eq!(std::fs::read_to_string(&trace).unwrap_or_default(), "ready\nTERM\n");
    }
}

// Seen under load: the keeper passed on every stop signal, so a program told to stop by its
// host heard TERM again when the host then died (the parent-death signal); and it decided
// whether the parent-death TERM had come by whether its loop had handled it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_hears_of_a_stop_once_when_its_host_then_dies() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("terms");
    let host = Host::start(
        &[server.addr().to_string()],
        "interval = 0\nshutdown_timeout = 30",
        &format!(
            "[[jobs]]\nname = \"counts\"\nprogram = [\"perl\", \"-e\", \"sub note {{ open my $f, '>>', '{0}'; print $f qq($_[0]\\\\n) }} $SIG{{TERM}} = sub {{ note('TERM') }}; note('ready'); sleep 1 while 1\"]\n",
            trace.display()
        ),
    );
    let keeper = host.wait_workers("counts", 1, LIMIT)[0];
    let group = common::host::groups_of(&[keeper]);
    assert!(poll_until(LIMIT, || std::fs::read_to_string(&trace)
        .is_ok_and(|t| t == "ready\n")));
    // The host's graceful stop: the program hears it (and ignores it)...
    signal(host.pid(), nix::sys::signal::Signal::SIGTERM);
    assert!(poll_until(LIMIT, || std::fs::read_to_string(&trace)
        .is_ok_and(|t| t == "ready\nTERM\n")));
    // ...then the host is killed before its shutdown_timeout: the keeper's parent-death
    // signal is not a second stop for the program.
    signal(host.pid(), nix::sys::signal::Signal::SIGKILL);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap_or_default(),
        "ready\nTERM\n"
    );
    for pid in common::host::members_of(&group) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

// Seen under load: a process asked to stop while busy (a lowered max) was SIGKILLed the moment
// it finished its job, because its shutdown_timeout counted from the request, not from the
// job's end; one that takes a moment to exit was killed on its way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_finishes_its_job_has_shutdown_timeout_to_exit() {
    if !common::perl_gearman_available() {
        return;
    }
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let port = free_port();
    let host = Host::start(
        &[server.addr().to_string()],
        "interval = 0\nshutdown_timeout = 1.5",
        &format!(
            "[console]\nlisten = \"127.0.0.1:{port}\"\n\
             [[jobs]]\nname = \"lingers\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
             env = {{ STATUS_LINES = \"1\", EXIT_DELAY_MS = \"700\" }}\nmin_processes = 2\nmax_processes = 2\n"
        ),
    );
    host.wait_workers("lingers", 2, LIMIT);
    assert!(poll_until(LIMIT, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let mut console = Console::connect(port);
    let client =
        std::sync::Arc::new(Client::new(vec![server.addr()], ClientOptions::default()).unwrap());
    let jobs: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.run(JobRequest::new("lingers", "2500")).await })
        })
        .collect();
    assert!(poll_until(LIMIT, || console
        .lines("scoreboard")
        .iter()
        .filter(|line| line.split_whitespace().nth(2) == Some("B"))
        .count()
        == 2));
    assert!(console.cmd("set_processes lingers 0 1").starts_with("OK"));
    for job in jobs {
        let outcome = tokio::time::timeout(LIMIT, job)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(outcome, complete("slept 2500"));
    }
    host.wait_log("[lingers] Exited with status 0", LIMIT);
    let log = host.log();
    assert!(
        !log.contains("killing it"),
        "a process was killed on its way out:\n{log}"
    );
}

// Found trying issue 12's keeper: a program that writes no status lines was guessed idle while
// it ran a job (only waiting jobs counted), so it was stopped for idleness mid-job, and one
// that dies of SIGTERM lost the job. While jobs run, as many silent processes count as busy,
// and none is stopped for idleness.
both_servers! {
    async fn a_silent_program_is_not_stopped_while_jobs_run(server) {
        if !common::perl_gearman_available() {
            return;
        }
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0.3",
            "[[jobs]]\nname = \"quiet\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
             env = { DIE_ON_TERM = \"1\" }\nmin_processes = 1\nmax_processes = 3\nmax_idle_time = 0.5\n",
        );
        host.wait_workers("quiet", 1, LIMIT);
        let client = std::sync::Arc::new(Client::new(vec![server.addr()], ClientOptions::default()).unwrap());
        let jobs: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("quiet", "3000")).await })
            })
            .collect();
        for job in jobs {
            let outcome = tokio::time::timeout(Duration::from_secs(30), job).await.unwrap().unwrap().unwrap();
            assert_eq!(outcome, complete("slept 3000"));
        }
        let log = host.log();
        assert!(!log.contains("[quiet] Exited with status"), "a process went while jobs ran:\n{log}");
        // Once nothing runs, the spare ones go.
        host.wait_workers("quiet", 1, LIMIT);
    }
}

// A program is told its jobs' timeouts (GEARDRIVER_TIMEOUTS); one that says it is busy and
// stays so 2 s past the timeout is killed and replaced, as a plugin's process would be.
#[test]
fn a_program_busy_past_its_timeout_is_killed_and_replaced() {
    let host = Host::start(
        &["127.0.0.1:1".to_string()],
        "interval = 0",
        "[[jobs]]\nname = \"stuck\"\ntimeout = 1\n\
         program = [\"sh\", \"-c\", \"echo \\\"$GEARDRIVER_TIMEOUTS\\\" >&2; echo busy >&$GEARDRIVER_STATUS_FD; exec sleep 100\"]\n",
    );
    let first = host.wait_workers("stuck", 1, LIMIT)[0];
    host.wait_log("[stuck] STDERR: 1", LIMIT);
    host.wait_log(
        &format!("({first}) [stuck] timeout: the job ran longer than 1s; its process was killed"),
        LIMIT,
    );
    assert!(poll_until(LIMIT, || !alive(first)));
    let second = host.wait_workers("stuck", 1, LIMIT)[0];
    assert_ne!(first, second);
}

//! Fault injection, bounded in time: worker processes killed under load, the host stopped
//! or killed under load, the job server restarted under load, workers that crash, hang or
//! flood their output, and a log or stats directory that cannot be written.

use crate::common;

use bytes::Bytes;
use common::console::Console;
use common::host::{Host, alive};
use common::{free_port, poll_until};
use geardriver::gearman::{Client, ClientOptions, JobOutcome, JobRequest};
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn client(server: &common::JobServer) -> Arc<Client> {
    Arc::new(Client::new(vec![server.addr()], ClientOptions::default()).unwrap())
}

fn kill(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// Runs `count` foreground jobs, `parallel` at a time; returns their outcomes in order.
async fn run_jobs(
    client: &Arc<Client>,
    function: &str,
    data: &str,
    count: usize,
    parallel: usize,
) -> Vec<JobOutcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (client, permits) = (client.clone(), permits.clone());
            let (function, data) = (function.to_string(), data.to_string());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                client.run(JobRequest::new(function, data)).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let outcome = tokio::time::timeout(LIMIT, task)
            .await
            .expect("job finished in time")
            .unwrap();
        outcomes.push(outcome.expect("the job ran"));
    }
    outcomes
}

both_servers! {
    async fn no_job_is_lost_while_workers_are_sigkilled(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 4\nmax_processes = 4\n",
        );
        host.wait_workers("nap", 4, Duration::from_secs(15));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killer = {
            let stop = stop.clone();
            let host_pid = host.pid();
            std::thread::spawn(move || {
                let mut killed = 0;
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(300));
                    let workers = common::host::children_of(host_pid);
                    if !workers.is_empty() {
                        n = n.wrapping_mul(31).wrapping_add(7);
                        kill(workers[n % workers.len()], Signal::SIGKILL);
                        killed += 1;
                    }
                }
                killed
            })
        };
        let outcomes = run_jobs(&client(&server), "nap", "150", 60, 8).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let killed = killer.join().unwrap();
        assert!(killed >= 5, "the killer killed {killed} workers");
        for outcome in outcomes {
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 150")));
        }
        assert!(!host.log().contains("giving up"), "killed workers are not a crash loop\n{}", host.log());
        host.wait_workers("nap", 4, Duration::from_secs(15));
    }
}

both_servers! {
    async fn a_graceful_stop_under_load_then_a_new_host_completes_every_job(server) {
        let jobs = "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 3\nmax_processes = 3\n";
        let mut first = Host::start(&[server.addr().to_string()], "interval = 0", jobs);
        first.wait_workers("nap", 3, Duration::from_secs(15));
        let client = client(&server);
        let pending = {
            let client = client.clone();
            tokio::spawn(async move { run_jobs(&client, "nap", "300", 30, 30).await })
        };
        assert!(common::wait_for_status(&server.addr(), "nap", |s| s.running == 3).await);
        first.signal(Signal::SIGTERM);
        assert!(first.wait_exit(Duration::from_secs(20)).success(), "{}", first.log());
        let second = Host::start(&[server.addr().to_string()], "interval = 0", jobs);
        second.wait_workers("nap", 3, Duration::from_secs(15));
        let outcomes = tokio::time::timeout(LIMIT, pending).await.unwrap().unwrap();
        assert_eq!(outcomes.len(), 30);
        assert!(outcomes.iter().all(|o| *o == JobOutcome::Complete(Bytes::from("slept 300"))), "{outcomes:?}");
        let finished_by_first = first.log().matches("Exited with status 0").count();
        assert_eq!(finished_by_first, 3, "the first host's processes finished their jobs and exited");
    }
}

both_servers! {
    async fn the_job_server_restarted_under_load_costs_only_the_jobs_it_held(server) {
        #[allow(unused_mut)]
        let mut server = server;
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 2\nmax_processes = 2\n",
        );
        let workers = host.wait_workers("rev", 2, Duration::from_secs(15));
        let before = client(&server);
        // Load while the server goes away: these may fail (the server held them), never hang.
        let load = {
            let before = before.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    let _ = tokio::time::timeout(Duration::from_secs(5), before.run(JobRequest::new("rev", format!("{i}")))).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.restart();
        tokio::time::timeout(LIMIT, load).await.expect("the load ended").unwrap();
        // Workers reconnect (same processes) and serve what is submitted after the restart.
        let after = client(&server);
        let outcomes = run_jobs(&after, "rev", "restart", 20, 4).await;
        assert!(outcomes.iter().all(|o| *o == JobOutcome::Complete(Bytes::from("tratser"))));
        assert_eq!(host.workers("rev"), workers, "the worker processes survived the restart");
    }
}

both_servers! {
    async fn crashing_hanging_and_flooding_workers_do_not_disturb_the_rest(server) {
        let port = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"crashy\"\nprogram = [\"sh\", \"-c\", \"exit 1\"]\n\
                 [[jobs]]\nname = \"stuck\"\nworker = \"sleep\"\ntimeout = 1\n\
                 [[jobs]]\nname = \"flood\"\nprogram = [\"sh\", \"-c\", \"while :; do echo 'a line of output that never stops'; done\"]\n\
                 [[jobs]]\nname = \"fine\"\nworker = \"echo\"\nmin_processes = 2\nmax_processes = 2\n"
            ),
        );
        host.wait_workers("fine", 2, Duration::from_secs(15));
        let c = client(&server);
        c.submit(JobRequest::new("stuck", "600000").background()).await.unwrap();
        let started = Instant::now();
        let mut console = Console::connect(port);
        let mut slowest = Duration::ZERO;
        while started.elapsed() < Duration::from_secs(4) {
            let asked = Instant::now();
            let status = console.cmd("status");
            slowest = slowest.max(asked.elapsed());
            assert!(status.contains("fine "), "{status}");
            let outcome = tokio::time::timeout(Duration::from_secs(5), c.run(JobRequest::new("fine", "still fine")))
                .await
                .expect("the fine job is served")
                .unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("still fine")));
        }
        assert!(slowest < Duration::from_millis(500), "the console took {slowest:?} to answer");
        let log = host.log();
        assert!(log.contains("[crashy] Exited with status 1"), "the crashing worker was seen");
        assert!(log.contains("lines dropped"), "the flood was throttled");
        assert!(
            log.lines().any(|l| l.contains("[stuck]") && l.contains("timeout: the job ran longer than 1s")),
            "the hanging job was ended"
        );
        // The flood is throttled, not the host: its CPU stays low.
        let ticks = common::host::cpu_ticks(host.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = common::host::cpu_ticks(host.pid()) - ticks;
        assert!(used < 30, "the host used {used} ticks of 100 in 1 s");
    }
}

both_servers! {
    async fn a_sigkilled_host_under_load_leaves_no_process_behind(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 3\nmax_processes = 3\n\
             [[jobs]]\nname = \"cmd\"\ncommand = [\"sleep\", \"1\"]\nmin_processes = 2\nmax_processes = 2\n\
             [[jobs]]\nname = \"prog\"\nprogram = [\"sleep\", \"600\"]\n",
        );
        host.wait_workers("nap", 3, Duration::from_secs(15));
        host.wait_workers("cmd", 2, Duration::from_secs(15));
        let c = client(&server);
        for _ in 0..3 {
            c.submit(JobRequest::new("nap", "800").background()).await.unwrap();
        }
        for _ in 0..2 {
            c.submit(JobRequest::new("cmd", "").background()).await.unwrap();
        }
        assert!(common::wait_for_status(&server.addr(), "cmd", |s| s.running == 2).await);
        // Everything the host started, and what those started (the commands).
        let mut tree = host.all_workers();
        for pid in tree.clone() {
            tree.extend(common::host::children_of(pid));
        }
        assert!(tree.len() >= 8, "{tree:?}");
        kill(host.pid(), Signal::SIGKILL);
        assert!(
            poll_until(Duration::from_secs(5), || tree.iter().all(|&p| !alive(p))),
            "still alive 5 s after the host died: {:?}",
            tree.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_log_file_that_cannot_be_written_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "logfile = \"/dev/full\"",
            "cannot write to logfile /dev/full: No space left on device",
        ),
        (
            "logfile = \"/sys/geardriver.log\"",
            "cannot open logfile /sys/geardriver.log",
        ),
        (
            "logfile = \"/nonexistent/dir/g.log\"",
            "cannot open logfile /nonexistent/dir/g.log: No such file or directory",
        ),
    ];
    for (setting, expected) in cases {
        let (_, stderr) = common::refused_start(
            dir.path(),
            &format!(
                "[driver]\n{setting}\n[console]\nlisten = \"\"\n[[jobs]]\nname = \"e\"\nworker = \"echo\"\n"
            ),
        );
        assert!(stderr.contains(expected), "{setting}: {stderr}");
        assert!(!stderr.contains("panicked"), "{setting}: {stderr}");
    }
}

#[test]
fn an_address_in_use_is_a_clear_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    for (section, expected) in [
        (
            format!("[console]\nlisten = \"127.0.0.1:{port}\"\n"),
            format!("cannot listen for the console on 127.0.0.1:{port}: Address already in use"),
        ),
        (
            format!(
                "[console]\nlisten = \"\"\n[server]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"
            ),
            format!(
                "cannot listen for the built-in job server on 127.0.0.1:{port}: Address already in use"
            ),
        ),
    ] {
        let (_, stderr) = common::refused_start(dir.path(), &format!("[driver]\n{section}"));
        assert!(stderr.contains(&expected), "{stderr}");
    }
    drop(taken);
}

// Issue 12, finding 9: the built-in server's 10,000-connection cap sat above the usual
// 1,024-descriptor limit, so 1,100 idle connections left the host unable to start processes
// or answer its console. Now the cap is what the limit leaves after the host's own needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_host_of_descriptors() {
    let server_port = free_port();
    let console_port = free_port();
    let (dir, config) = common::host::config_dir(
        &[format!("127.0.0.1:{server_port}")],
        "interval = 0",
        &format!(
            "[server]\nenabled = true\nlisten = \"127.0.0.1:{server_port}\"\n\
                 [console]\nlisten = \"127.0.0.1:{console_port}\"\n\
                 [[jobs]]\nname = \"e\"\nworker = \"echo\"\nmin_processes = 2\nmax_processes = 2\n"
        ),
    );
    // A hard limit of 300 descriptors for the host.
    let host = start_under_ulimit("-n 300", dir, config);
    let workers = host.wait_workers("e", 2, LIMIT);
    host.wait_log("max_connections=", LIMIT);
    let mut idle = Vec::new();
    for _ in 0..400 {
        match std::net::TcpStream::connect(("127.0.0.1", server_port)) {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // Let the server accept (and refuse) them all.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut console = Console::connect(console_port);
    assert!(
        console.cmd("status").starts_with("e  2  2  2"),
        "the console answers"
    );
    // A process can still be started: kill one, it is replaced.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0] as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        poll_until(LIMIT, || {
            let now = host.workers("e");
            now.len() == 2 && !now.contains(&workers[0])
        }),
        "the killed process was replaced\n{}",
        host.log()
    );
    assert!(
        !host.log().contains("cannot start a process"),
        "{}",
        host.log()
    );
    let refusals = host
        .log()
        .matches("too many connections; refusing one")
        .count();
    assert!(
        refusals <= 2,
        "refusals are logged at a bounded rate: {refusals}"
    );
    drop(idle);
}

/// A host started by a shell that first runs `ulimit ARGS`.
fn start_under_ulimit(args: &str, dir: tempfile::TempDir, config: std::path::PathBuf) -> Host {
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("ulimit {args} && exec \"$0\" run --config \"$1\""),
        ])
        .arg(env!("CARGO_BIN_EXE_geardriver"))
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("host.stderr")).unwrap())
        .spawn()
        .unwrap();
    let log = dir.path().join("host.log");
    Host {
        child,
        dir,
        config,
        log,
    }
}

/// The soft and hard limits on open files of `pid`, from /proc/PID/limits.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

// Issue 12, finding 9: the host raises its soft open-files limit to the hard one at start.
// (The test above sets both with `ulimit -n`, so it never saw the raise.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_raises_its_soft_open_files_limit_to_the_hard_one() {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard <= 300 {
        common::notice("skipped: the hard open-files limit is 300 or less, no room below it");
        return;
    }
    let server_port = free_port();
    let (dir, config) = common::host::config_dir(
        &[format!("127.0.0.1:{server_port}")],
        "interval = 0",
        &format!(
            "[server]\nenabled = true\nlisten = \"127.0.0.1:{server_port}\"\n\
             [[jobs]]\nname = \"e\"\nworker = \"echo\"\n"
        ),
    );
    let host = start_under_ulimit("-Sn 300", dir, config);
    host.wait_log("max_connections=", LIMIT);
    assert_eq!(
        open_files_limits(host.pid()),
        (hard, hard),
        "the soft limit was raised to the hard one\n{}",
        host.log()
    );
    assert!(
        host.log().contains(&format!("open_files={hard}")),
        "{}",
        host.log()
    );
}

/// The host's stats table, as another process of the same user can open it: the memfd among
/// the host's descriptors.
fn stats_memfd(host_pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{host_pid}/fd"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|fd| {
            std::fs::read_link(fd).is_ok_and(|target| {
                target
                    .to_string_lossy()
                    .starts_with("/memfd:geardriver-stats")
            })
        })
}

// Issue 12, finding 2: truncating /dev/shm/geardriver-PID.stats killed the host by SIGBUS in
// 50 ms (any worker or command runs as the user who can do it). The table is a memfd now,
// sealed against shrinking and growing: whoever opens it cannot change its size.
both_servers! {
    async fn the_stats_table_cannot_be_truncated_or_spoilt_from_outside(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 2\nmax_processes = 2\n",
        );
        let workers = host.wait_workers("rev", 2, Duration::from_secs(15));
        let path = stats_memfd(host.pid()).expect("the host holds its stats table as a memfd");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for len in [0, 4096, 1 << 30] {
            let refused = file.set_len(len).expect_err("the size is sealed");
            assert_eq!(refused.raw_os_error(), Some(nix::libc::EPERM), "{len}: {refused}");
        }
        // Scribbling over it (header and first slots) garbles what it shows, no more: a
        // replacement process still starts (found trying issue 12: they refused the table).
        std::io::Write::write_all(&mut &file, &[0xff; 4096]).unwrap();
        drop(file);
        // Everything goes on: the host, its workers, a replacement process, the jobs.
        kill(workers[0], Signal::SIGKILL);
        assert!(poll_until(Duration::from_secs(15), || {
            let now = host.workers("rev");
            now.len() == 2 && !now.contains(&workers[0])
        }));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(host.workers("rev").len(), 2, "{}", host.log());
        assert!(!host.log().contains("is not a geardriver stats table"), "{}", host.log());
        let outcomes = run_jobs(&client(&server), "rev", "abc", 20, 4).await;
        assert!(outcomes.iter().all(|o| *o == JobOutcome::Complete(Bytes::from("cba"))), "{outcomes:?}");
        assert!(alive(host.pid()), "{}", host.log());
    }
}

/// `unshare` prefix that runs a command as PID 1 of a new PID namespace (as a container's
/// entry point runs), or `None` when this machine does not allow it.
fn pid_namespace() -> Option<Vec<&'static str>> {
    let candidates: [&[&str]; 2] = [
        &["--pid", "--fork", "--kill-child"],
        &[
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--kill-child",
        ],
    ];
    candidates
        .into_iter()
        .find(|args| {
            std::process::Command::new("unshare")
                .args(*args)
                .args(["sh", "-c", "test $$ = 1"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(<[&str]>::to_vec)
}

// Issue 12, finding 2: a stats file left by a SIGKILLed host, or created first by another
// local user, made a new host with that PID (every container restart: PID 1) refuse to start
// (`File exists`). Here the host runs as PID 1 of a fresh PID namespace, twice, with a
// squatter's file where the stats file used to go.
#[test]
fn a_host_restarted_as_pid_1_starts_whatever_was_left_behind() {
    let Some(unshare) = pid_namespace() else {
        assert!(
            !common::gearmand_required(),
            "CI must be able to run `unshare --pid --fork` (root or user namespaces)"
        );
        common::notice("cannot make a PID namespace here; skipping the PID-reuse test");
        return;
    };
    let port = free_port();
    let (dir, config) = common::host::config_dir(
        &[format!("127.0.0.1:{port}")],
        "interval = 0\nstats_dir = \"{dir}\"",
        &format!(
            "[server]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
             [[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 1\nmax_processes = 1\n"
        ),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&config, text).unwrap();
    let squatter = dir.path().join("geardriver-1.stats");
    std::fs::write(&squatter, b"not yours").unwrap();
    let log = dir.path().join("host.log");
    let serves = |round: usize| {
        let mut host = std::process::Command::new("unshare")
            .args(&unshare)
            .arg(env!("CARGO_BIN_EXE_geardriver"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = poll_until(Duration::from_secs(15), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("[rev] Process started")
                .count()
                >= round
        });
        let served = started
            && std::process::Command::new(env!("CARGO_BIN_EXE_geardriver"))
                .args(["submit", "--timeout", "10", "--server"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["rev", "abc"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"cba"));
        // SIGKILL, as a container runtime does: nothing is cleaned up.
        let _ = host.kill();
        let output = host.wait_with_output().unwrap();
        assert!(
            served,
            "round {round}: the host did not serve\n--- stderr ---\n{}\n--- log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    serves(1);
    serves(2);
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not yours");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("stats_dir is ignored"), "{log}");
}

// Issue 12, finding 1: the supervisor, console and observer were tasks whose results were
// dropped: a supervisor that panicked left a headless host (console and job server up, no
// workers) that even exited 0 on SIGTERM. Now any part that ends or panics stops the workers
// and the host exits non-zero naming the part. (Debug builds take GEARDRIVER_FAULT to make a
// part fail; release builds have no such switch.)
#[test]
fn a_part_that_fails_stops_the_workers_and_the_host_with_the_reason() {
    if !cfg!(debug_assertions) {
        common::notice("fault injection exists in debug builds only; skipping");
        return;
    }
    let faults = [
        (
            "panic:supervisor",
            "the supervisor panicked: injected fault",
        ),
        ("panic:console", "the console panicked: injected fault"),
        ("panic:observer", "the observer panicked: injected fault"),
        (
            "panic:built-in job server",
            "the built-in job server panicked: injected fault",
        ),
        ("end:signal handler", "the signal handler ended on its own"),
    ];
    for (fault, reason) in faults {
        let port = free_port();
        let (dir, config) = common::host::config_dir(
            &[format!("127.0.0.1:{port}")],
            "interval = 1\nshutdown_timeout = 3",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{}\"\n[server]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 2\nmax_processes = 2\n",
                free_port()
            ),
        );
        let mut host = Host::start_with_env(dir, config, &[("GEARDRIVER_FAULT", fault)]);
        let workers = host.wait_workers("rev", 2, Duration::from_secs(15));
        let status = host.wait_exit(Duration::from_secs(20));
        let log = host.log();
        assert_eq!(status.code(), Some(1), "{fault}: {status:?}\n{log}");
        assert!(
            log.contains(reason) && log.contains("stopping every worker and exiting"),
            "{fault}:\n{log}"
        );
        assert!(
            host.stderr().contains(reason),
            "{fault}: the reason is on stderr too:\n{}",
            host.stderr()
        );
        for pid in workers {
            assert!(
                !alive(pid),
                "{fault}: worker {pid} outlived the host\n{log}"
            );
        }
    }
}

// Found trying issue 12: with `logfile = "-"` and the host's stderr a pipe nobody read (a
// stalled log driver), the host froze: no console, no supervision, SIGTERM not acted on. The
// log is written by a thread of its own; what cannot be written in time is dropped.
#[test]
fn a_stalled_log_output_does_not_stop_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let console = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[driver]\njob_servers = [\"127.0.0.1:{}\"]\ninterval = 0\nlogfile = \"-\"\nloglevel = \"debug\"\n\
             [console]\nlisten = \"127.0.0.1:{console}\"\n\
             [[jobs]]\nname = \"chatty\"\nprogram = [\"sh\", \"-c\", \"while :; do echo 0123456789012345678901234567890123456789; done\"]\n",
            free_port()
        ),
    )
    .unwrap();
    // stderr is a pipe this test never reads: once its 64 KiB are full, writes block.
    struct KilledAtEnd(std::process::Child);
    impl Drop for KilledAtEnd {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut host = common::geardriver()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(KilledAtEnd)
        .unwrap();
    // 200 relayed lines a second fill the pipe within a second or two.
    std::thread::sleep(Duration::from_secs(4));
    let mut c = Console::connect(console);
    assert!(c.cmd("status").starts_with("chatty"), "the console answers");
    kill(host.0.id(), Signal::SIGTERM);
    let mut status = None;
    assert!(
        poll_until(Duration::from_secs(15), || {
            status = host.0.try_wait().unwrap();
            status.is_some()
        }),
        "the host stops"
    );
    assert!(status.unwrap().success(), "{status:?}");
}

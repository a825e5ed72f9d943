//! The host against a real gearmand with real worker processes: minimum kept, crashes
//! replaced, crash loops given up on, autoscaling both ways, graceful stop under load, no
//! orphan after a SIGKILLed host, reload, several job servers, the pidfile.

use crate::common;

use bytes::Bytes;
use common::host::{Host, alive, children_of, cpu_ticks, groups_of, members_of, zombies_of};
use common::poll_until;
use geardriver::gearman::{Client, ClientOptions, JobOutcome, JobRequest, ServerAddr};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(15);

fn client(addr: ServerAddr) -> Client {
    Client::new(vec![addr], ClientOptions::default()).unwrap()
}

/// Runs a foreground job (bounded in time) and checks its result.
async fn expect_result(addr: ServerAddr, function: &str, data: &str, expected: &str) {
    let outcome = tokio::time::timeout(
        LIMIT,
        client(addr).run(JobRequest::new(function.to_string(), data.to_string())),
    )
    .await
    .expect("job finished in time")
    .expect("job ran");
    assert_eq!(
        outcome,
        JobOutcome::Complete(Bytes::from(expected.to_string())),
        "{function}({data})"
    );
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

both_servers! {
    async fn min_processes_are_started_and_a_killed_one_is_replaced(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 2\nmax_processes = 4\n",
        );
        let pids = host.wait_workers("rev", 2, LIMIT);
        for pid in &pids {
            host.wait_log(&format!("({pid}) [rev] Process started"), LIMIT);
        }
        // They serve.
        expect_result(gearmand.addr(), "rev", "abc", "cba").await;

        let killed = pids[0];
        let at = Instant::now();
        sigkill(killed);
        let mut now = Vec::new();
        assert!(
            poll_until(LIMIT, || {
                now = host.workers("rev");
                now.len() == 2 && !now.contains(&killed)
            }),
            "replaced: {now:?}\n{}",
            host.log()
        );
        assert!(
            at.elapsed() < Duration::from_secs(3),
            "replaced within a second or so: {:?}",
            at.elapsed()
        );
        host.wait_log(
            &format!("({killed}) [rev] Exited with status 137 (killed by SIGKILL)"),
            LIMIT,
        );
        assert!(zombies_of(host.pid()).is_empty(), "every child is reaped");
        expect_result(gearmand.addr(), "rev", "xyz", "zyx").await;
    }
}

both_servers! {
    async fn worker_output_and_program_environment_are_logged(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"prog\"\nprogram = [\"sh\", \"-c\", \"echo out:$GEARDRIVER_JOB:$GEARDRIVER_JOB_SERVERS:$EXTRA; echo err-line >&2; exec sleep 60\"]\nenv = { EXTRA = \"x1\" }\n",
        );
        let pid = host.wait_workers("prog", 1, LIMIT)[0];
        host.wait_log(
            &format!("({pid}) [prog] STDOUT: out:prog:{}:x1", gearmand.addr()),
            LIMIT,
        );
        host.wait_log(&format!("({pid}) [prog] STDERR: err-line"), LIMIT);
    }
}

both_servers! {
    async fn a_crash_looping_job_backs_off_and_is_marked_failed(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0\nrestart_delay = 0.05",
            "[[jobs]]\nname = \"crashy\"\nprogram = [\"sh\", \"-c\", \"echo starting; exit 7\"]\n\
             [[jobs]]\nname = \"fine\"\nworker = \"echo\"\n",
        );
        // 0.05 + 0.1 + 0.2 + 0.4 s of backoff between five quick deaths.
        host.wait_log("giving up on this job", LIMIT);
        let log = host.log();
        let starts = log.matches("[crashy] Process started").count();
        assert_eq!(starts, 5, "{log}");
        assert!(
            log.contains(
                "5 processes in a row died within 5s of starting; the last one exited with status 7"
            ),
            "{log}"
        );
        // No more restarts, and no CPU burnt meanwhile.
        let ticks = cpu_ticks(host.pid());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(host.log().matches("[crashy] Process started").count(), 5);
        let used = cpu_ticks(host.pid()) - ticks;
        assert!(
            used < 20,
            "host used {used} ticks in 2 s while a job was failed"
        );
        // The other job is unaffected.
        host.wait_workers("fine", 1, LIMIT);
        expect_result(gearmand.addr(), "fine", "still here", "still here").await;
        // A reload resets the failed job: it is tried again.
        host.signal(Signal::SIGHUP);
        host.wait_log("config reloaded", LIMIT);
        assert!(
            poll_until(LIMIT, || host
                .log()
                .matches("[crashy] Process started")
                .count()
                > 5),
            "restarted after the reload\n{}",
            host.log()
        );
    }
}

both_servers! {
    async fn jobs_in_a_group_share_processes(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"a\"\nworker = \"reverse\"\ngroup = \"g\"\nmin_processes = 2\n\
             [[jobs]]\nname = \"b\"\nworker = \"echo\"\ngroup = \"g\"\n",
        );
        let pids = host.wait_workers("g", 2, LIMIT);
        assert_eq!(
            host.all_workers(),
            pids,
            "one pool, two processes, for two jobs"
        );
        expect_result(gearmand.addr(), "a", "ab", "ba").await;
        expect_result(gearmand.addr(), "b", "ab", "ab").await;
        // Each process registered both functions (the second may still be registering).
        let mut admin = geardriver::gearman::AdminClient::connect(&gearmand.addr(), LIMIT)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + LIMIT;
        let rows = loop {
            let geardriver::gearman::AdminReply::Workers(rows) = admin
                .execute(&geardriver::gearman::AdminCommand::Workers)
                .await
                .unwrap()
            else {
                panic!()
            };
            let registered = rows
                .iter()
                .filter(|r| r.client_id.as_deref().is_some_and(|id| id.contains(":g:")))
                .filter(|r| r.functions.len() == 2)
                .count();
            if registered == 2 || std::time::Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ours: Vec<_> = rows
            .iter()
            .filter(|r| r.client_id.as_deref().is_some_and(|id| id.contains(":g:")))
            .collect();
        assert_eq!(ours.len(), 2, "{rows:?}");
        for row in ours {
            let mut functions = row.functions.clone();
            functions.sort();
            assert_eq!(functions, ["a", "b"]);
        }
    }
}

both_servers! {
    async fn scaling_down_never_stops_a_busy_process(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 1\nmax_processes = 3\nmax_idle_time = 1\n",
        );
        let first = host.wait_workers("nap", 1, LIMIT)[0];
        let client = std::sync::Arc::new(client(gearmand.addr()));
        // The only process takes the long job; the short ones wait and make the pool grow.
        let long = client.submit(JobRequest::new("nap", "5000")).await.unwrap();
        assert!(common::wait_for_status(&gearmand.addr(), "nap", |s| s.running == 1).await);
        let short: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("nap", "100")).await })
            })
            .collect();
        host.wait_workers("nap", 3, LIMIT);
        for job in short {
            let outcome = tokio::time::timeout(LIMIT, job)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 100")));
        }
        // The two idle ones go after max_idle_time; the busy one stays and finishes.
        let left = host.wait_workers("nap", 1, Duration::from_secs(10));
        assert_eq!(left, vec![first], "the busy process was kept");
        let outcome = tokio::time::timeout(LIMIT, long.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 5000")));
    }
}

// Issue 12, finding 4: `set_processes JOB 0 1` with three 5 s jobs running and
// `shutdown_timeout = 2` SIGKILLed two of them mid-job, and their jobs ran again.
both_servers! {
    async fn a_lowered_max_lets_busy_processes_finish_their_job(gearmand) {
        let port = common::free_port();
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0\nshutdown_timeout = 1",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 3\nmax_processes = 3\n"
            ),
        );
        host.wait_workers("nap", 3, LIMIT);
        let client = std::sync::Arc::new(client(gearmand.addr()));
        let jobs: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("nap", "3000")).await })
            })
            .collect();
        assert!(common::wait_for_status(&gearmand.addr(), "nap", |s| s.running == 3).await);
        let mut console = common::console::Console::connect(port);
        assert!(console.cmd("set_processes nap 0 1").starts_with("OK"));
        for job in jobs {
            let outcome = tokio::time::timeout(LIMIT, job).await.unwrap().unwrap().unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 3000")));
        }
        host.wait_workers("nap", 1, LIMIT);
        let log = host.log();
        assert!(!log.contains("killing it"), "a busy process was killed:\n{log}");
        assert_eq!(
            log.matches("[nap] Process started").count(),
            3,
            "no job ran twice, no process was replaced:\n{log}"
        );
    }
}

/// Submits `function(workload)`, and once it runs rewrites the config (`driver_extra`,
/// `jobs`) and reloads the host; returns the job's outcome.
async fn reload_while_running(
    host: &Host,
    server: &common::JobServer,
    (function, workload): (&str, &str),
    driver_extra: &str,
    jobs: &str,
) -> JobOutcome {
    let job = client(server.addr())
        .submit(JobRequest::new(function.to_string(), workload.to_string()))
        .await
        .unwrap();
    assert!(common::wait_for_status(&server.addr(), function, |s| s.running == 1).await);
    host.rewrite_config(&[server.addr().to_string()], driver_extra, jobs);
    host.signal(Signal::SIGHUP);
    host.wait_log("config reloaded", LIMIT);
    tokio::time::timeout(LIMIT, job.wait())
        .await
        .unwrap()
        .unwrap()
}

// Issue 12, item 4: a job removed by a reload lets its busy process finish the job (the
// client gets the result; shutdown_timeout, which bounds only idle processes that do not
// go, does not cut it short), and the process goes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_jobs_busy_process_finishes_its_job() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let servers = [server.addr().to_string()];
    let jobs = |extra: &str| format!("[[jobs]]\nname = \"stay\"\nworker = \"echo\"\n{extra}");
    let host = Host::start(
        &servers,
        "interval = 0\nshutdown_timeout = 1",
        &jobs("[[jobs]]\nname = \"gone\"\nworker = \"sleep\"\ntimeout = 10\n"),
    );
    let busy = host.wait_workers("gone", 1, LIMIT)[0];
    let outcome = reload_while_running(
        &host,
        &server,
        ("gone", "2500"),
        "interval = 0\nshutdown_timeout = 1",
        &jobs(""),
    )
    .await;
    assert_eq!(
        outcome,
        JobOutcome::Complete(Bytes::from("slept 2500")),
        "{}",
        host.log()
    );
    assert!(
        poll_until(LIMIT, || !alive(busy)),
        "the removed job's process went"
    );
    let log = host.log();
    assert!(
        !log.contains("killing it") && !log.contains("was killed"),
        "{log}"
    );
    expect_result(server.addr(), "stay", "x", "x").await;
}

// Issue 12, item 10: the overrun backstop read the pool's current config, so a reload that
// lowered a job's timeout had the host kill a process started with the old one at the new
// timeout (plus the backstop's 2 s), in the middle of a job its own timeout allowed. The
// process's job keeps the timeout it was started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_shorten_the_timeout_of_a_job_in_hand() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let servers = [server.addr().to_string()];
    let jobs = |timeout: u32| {
        format!("[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\ntimeout = {timeout}\n")
    };
    let host = Host::start(&servers, "interval = 0", &jobs(30));
    let old = host.wait_workers("nap", 1, LIMIT)[0];
    let outcome =
        reload_while_running(&host, &server, ("nap", "4500"), "interval = 0", &jobs(1)).await;
    assert_eq!(
        outcome,
        JobOutcome::Complete(Bytes::from("slept 4500")),
        "{}",
        host.log()
    );
    assert!(
        poll_until(LIMIT, || !alive(old)),
        "the old process was replaced after its job"
    );
    // The new timeout holds for the new process.
    let outcome = client(server.addr())
        .run(JobRequest::new("nap", "3000"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        JobOutcome::failed_with("timeout: the job ran longer than 1s"),
        "{}",
        host.log()
    );
}

// Issue 12, finding 7: after `mv host.log host.log.1` the host wrote to `.1` for ever, and the
// log did not say why processes started or stopped.
both_servers! {
    async fn the_log_can_be_rotated_and_says_why_the_pool_scales(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 0\nmax_processes = 2\nmax_idle_time = 1\n",
        );
        host.wait_log("geardriver 0.1.0 starting", LIMIT);
        let rotated = |n: u32| host.dir.path().join(format!("host.log.{n}"));
        std::fs::rename(&host.log, rotated(1)).unwrap();
        host.signal(Signal::SIGUSR1);
        host.wait_log("SIGUSR1 received: log file reopened", LIMIT);
        std::fs::rename(&host.log, rotated(2)).unwrap();
        host.signal(Signal::SIGHUP);
        host.wait_log("config reloaded", LIMIT);
        host.wait_log("SIGHUP received: log file reopened", LIMIT);
        let second = std::fs::read_to_string(rotated(2)).unwrap();
        assert!(!second.contains("config reloaded"), "{second}");
        // Scaling, with its reason.
        let client = client(gearmand.addr());
        let jobs: Vec<_> = (0..2)
            .map(|_| client.submit(JobRequest::new("nap", "1500")))
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
        host.wait_log("[nap] scale up: jobs wait and every process is busy", LIMIT);
        // A `killall -HUP geardriver` reaches the workers too: they ignore the host's signals
        // (from when they run; both are running a job now).
        assert!(common::wait_for_status(&gearmand.addr(), "nap", |s| s.running == 2).await);
        let busy = host.workers("nap");
        assert!(!busy.is_empty());
        for &pid in &busy {
            for signal in [Signal::SIGHUP, Signal::SIGUSR1] {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(busy.iter().all(|&pid| alive(pid)), "{busy:?}\n{}", host.log());
        host.wait_log("[nap] scale down: idle for max_idle_time while nothing waits", LIMIT);
        assert!(alive(host.pid()));
    }
}

// Issue 12, item 7: `log_format = "json"` for log shippers: every line one JSON object.
both_servers! {
    async fn a_json_log_has_one_object_per_line(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0\nlog_format = \"json\"",
            "[[jobs]]\nname = \"talk\"\nprogram = [\"sh\", \"-c\", \"echo 'said \\\"this\\\"'; sleep 60\"]\n",
        );
        let pid = host.wait_workers("talk", 1, LIMIT)[0];
        host.wait_log("said", LIMIT);
        let log = host.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(lines.iter().all(|l| l["time"].is_string() && l["level"].is_string() && l["message"].is_string()), "{log}");
        assert!(
            lines.iter().any(|l| l["pid"] == pid && l["job"] == "talk" && l["message"] == "Process started"),
            "{log}"
        );
        assert!(
            lines.iter().any(|l| l["pid"] == pid && l["message"] == "STDOUT: said \"this\""),
            "{log}"
        );
    }
}

both_servers! {
    async fn a_backlog_scales_up_to_max_and_idleness_back_down_to_min(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 1\nmax_processes = 4\nmax_idle_time = 2\n",
        );
        host.wait_workers("nap", 1, LIMIT);
        let client = std::sync::Arc::new(client(gearmand.addr()));
        let started = Instant::now();
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("nap", "600")).await })
            })
            .collect();
        let mut seen = 0;
        assert!(
            poll_until(LIMIT, || {
                seen = seen.max(host.workers("nap").len());
                seen == 4
            }),
            "scaled to max\n{}",
            host.log()
        );
        let reaction = started.elapsed();
        assert!(
            reaction < Duration::from_secs(4),
            "backlog to max took {reaction:?}"
        );
        for job in jobs {
            let outcome = tokio::time::timeout(LIMIT, job)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 600")));
        }
        assert!(host.workers("nap").len() <= 4, "never above max");
        // Idle for max_idle_time with nothing waiting: back to min.
        host.wait_workers("nap", 1, Duration::from_secs(10));
        // Gracefully (the log line follows the exit by a moment).
        host.wait_log("Exited with status 0", LIMIT);
    }
}

both_servers! {
    async fn sigterm_under_load_finishes_the_jobs_in_hand_and_leaves_no_process(gearmand) {
        let mut host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 3\nmax_processes = 3\n",
        );
        let workers = host.wait_workers("nap", 3, LIMIT);
        let client = std::sync::Arc::new(client(gearmand.addr()));
        let jobs: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("nap", "1500")).await })
            })
            .collect();
        assert!(common::wait_for_status(&gearmand.addr(), "nap", |s| s.running == 3).await);
        host.signal(Signal::SIGTERM);
        for job in jobs {
            let outcome = tokio::time::timeout(LIMIT, job)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 1500")));
        }
        let status = host.wait_exit(LIMIT);
        assert!(status.success(), "{status:?}\n{}", host.log());
        for pid in workers {
            assert!(!alive(pid), "worker {pid} outlived the host");
        }
    }
}

both_servers! {
    async fn a_sigkilled_host_leaves_no_worker_behind(gearmand) {
        let host = Host::start(
            &[gearmand.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 2\nmax_processes = 2\n\
             [[jobs]]\nname = \"prog\"\nprogram = [\"sleep\", \"60\"]\n",
        );
        let mut workers = host.wait_workers("nap", 2, LIMIT);
        workers.extend(host.wait_workers("prog", 1, LIMIT));
        // One worker holds a job when the host dies: it finishes it, then exits.
        let client = client(gearmand.addr());
        let job = client.submit(JobRequest::new("nap", "1000")).await.unwrap();
        assert!(common::wait_for_status(&gearmand.addr(), "nap", |s| s.running == 1).await);
        sigkill(host.pid());
        let outcome = tokio::time::timeout(LIMIT, job.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 1000")));
        assert!(
            poll_until(Duration::from_secs(5), || workers
                .iter()
                .all(|&pid| !alive(pid))),
            "workers outlived a SIGKILLed host: {:?}",
            workers.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
    }
}

both_servers! {
    async fn sighup_adds_and_removes_jobs_without_touching_the_others(gearmand) {
        let servers = [gearmand.addr().to_string()];
        let jobs = |names: &[(&str, &str, u32)]| -> String {
            names
                .iter()
                .map(|(name, worker, min)| format!("[[jobs]]\nname = \"{name}\"\nworker = \"{worker}\"\nmin_processes = {min}\nmax_processes = 4\n"))
                .collect()
        };
        let host = Host::start(
            &servers,
            "interval = 0",
            &jobs(&[("keep", "echo", 2), ("drop", "reverse", 1)]),
        );
        let kept = host.wait_workers("keep", 2, LIMIT);
        let dropped = host.wait_workers("drop", 1, LIMIT);

        host.rewrite_config(
            &servers,
            "interval = 0",
            &jobs(&[("keep", "echo", 2), ("added", "reverse", 1)]),
        );
        host.signal(Signal::SIGHUP);
        host.wait_log("config reloaded", LIMIT);
        host.wait_workers("added", 1, LIMIT);
        host.wait_workers("drop", 0, LIMIT);
        assert!(!alive(dropped[0]));
        assert_eq!(
            host.workers("keep"),
            kept,
            "an unchanged job keeps its processes"
        );

        // A changed limit applies in place.
        host.rewrite_config(
            &servers,
            "interval = 0",
            &jobs(&[("keep", "echo", 3), ("added", "reverse", 1)]),
        );
        host.signal(Signal::SIGHUP);
        let now = host.wait_workers("keep", 3, LIMIT);
        assert!(
            kept.iter().all(|pid| now.contains(pid)),
            "raising min keeps the old processes"
        );

        // An invalid config is logged and the old one kept.
        std::fs::write(&host.config, "[[jobs]]\nname = \"broken\"\n").unwrap();
        host.signal(Signal::SIGHUP);
        host.wait_log("reload refused; keeping the old config", LIMIT);
        host.wait_log("needs one of worker, command or program", LIMIT);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(host.workers("keep").len(), 3);
        assert_eq!(host.workers("added").len(), 1);
        expect_result(gearmand.addr(), "added", "olleh", "hello").await;
    }
}

both_servers! {
    async fn two_job_servers_are_served_and_one_can_die(first) {
        let mut second = first.another();
        let host = Host::start(
            &[first.addr().to_string(), second.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"rev\"\nworker = \"reverse\"\nmin_processes = 1\nmax_processes = 2\n",
        );
        host.wait_workers("rev", 1, LIMIT);
        for gearmand in [&first, &second] {
            expect_result(gearmand.addr(), "rev", "ab", "ba").await;
        }
        second.kill();
        host.wait_log("observer: lost the job server", LIMIT);
        for _ in 0..3 {
            expect_result(first.addr(), "rev", "abc", "cba").await;
        }
        assert_eq!(
            host.workers("rev").len(),
            1,
            "losing a job server costs no process"
        );
    }
}

both_servers! {
    async fn a_second_host_with_the_same_pidfile_refuses_to_start(gearmand) {
        let servers = [gearmand.addr().to_string()];
        let pidfile_dir = tempfile::tempdir().unwrap();
        let pidfile = pidfile_dir.path().join("geardriver.pid");
        let extra = format!("interval = 0\npidfile = \"{}\"", pidfile.display());
        let jobs = "[[jobs]]\nname = \"e\"\nworker = \"echo\"\n";
        let first = Host::start(&servers, &extra, jobs);
        first.wait_workers("e", 1, LIMIT);
        assert_eq!(
            std::fs::read_to_string(&pidfile).unwrap().trim(),
            first.pid().to_string()
        );
        let mut second = Host::start(&servers, &extra, jobs);
        let status = second.wait_exit(LIMIT);
        assert!(!status.success());
        let said = second.stderr() + &second.log();
        assert!(
            said.contains(&format!(
                "is held by another running geardriver (pid {})",
                first.pid()
            )),
            "{said}"
        );
        assert_eq!(children_of(second.pid()), Vec::<u32>::new());
        assert!(alive(first.pid()));
    }
}

#[test]
fn an_invalid_config_stops_the_host_at_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) =
        common::refused_start(dir.path(), "[[jobs]]\nname = \"x\"\nworker = \"nosuch\"\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("jobs[0] \"x\": worker = \"nosuch\" is not a registered plugin"),
        "{stderr}"
    );
}

// Issue 12, finding 3: what a `command` or `program` worker started (`sleep 1000 &`, a PHP
// program's helpers) survived the host's SIGTERM and SIGKILL with PPID 1, and after a host
// SIGKILL a busy worker ran its whole job (20 s seen with `shutdown_timeout = 3`).
const LEAVERS: &str = "[[jobs]]\nname = \"cmd\"\ncommand = [\"sh\", \"-c\", \"sleep 1000 >/dev/null 2>&1 & cat\"]\nmin_processes = 1\nmax_processes = 1\n\
     [[jobs]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"sleep 1000 >/dev/null 2>&1 & sleep 20\"]\nmin_processes = 1\nmax_processes = 1\n\
     [[jobs]]\nname = \"prog\"\nprogram = [\"sh\", \"-c\", \"sleep 1000 & exec sleep 1000\"]\n";

both_servers! {
    async fn nothing_a_worker_started_outlives_a_stopped_host(gearmand) {
        let mut host = Host::start(&[gearmand.addr().to_string()], "interval = 0\nshutdown_timeout = 3", LEAVERS);
        let mut workers = host.wait_workers("cmd", 1, LIMIT);
        workers.extend(host.wait_workers("long", 1, LIMIT));
        workers.extend(host.wait_workers("prog", 1, LIMIT));
        expect_result(gearmand.addr(), "cmd", "hello", "hello").await;
        let groups = groups_of(&workers);
        assert_eq!(groups, workers, "every worker process leads its own group");
        assert!(
            poll_until(LIMIT, || members_of(&groups).len() >= 5),
            "the command and the program left a sleep each: {:?}",
            members_of(&groups)
        );
        host.signal(Signal::SIGTERM);
        assert!(host.wait_exit(LIMIT).success(), "{}", host.log());
        assert!(
            poll_until(Duration::from_secs(2), || members_of(&groups).is_empty()),
            "left behind after a SIGTERM: {:?}",
            members_of(&groups)
        );
    }
}

both_servers! {
    async fn a_sigkilled_host_leaves_nothing_past_shutdown_timeout(gearmand) {
        let host = Host::start(&[gearmand.addr().to_string()], "interval = 0\nshutdown_timeout = 2", LEAVERS);
        let mut workers = host.wait_workers("cmd", 1, LIMIT);
        workers.extend(host.wait_workers("long", 1, LIMIT));
        workers.extend(host.wait_workers("prog", 1, LIMIT));
        let groups = groups_of(&workers);
        let client = client(gearmand.addr());
        let _job = client.submit(JobRequest::new("long", "")).await.unwrap();
        assert!(common::wait_for_status(&gearmand.addr(), "long", |s| s.running == 1).await);
        sigkill(host.pid());
        let killed = Instant::now();
        // The busy worker may finish its 20 s job for shutdown_timeout (2 s), then its group
        // goes; the idle ones go at once.
        assert!(
            poll_until(Duration::from_secs(8), || members_of(&groups).is_empty()),
            "left behind {:?} after a host SIGKILL",
            members_of(&groups)
        );
        assert!(
            killed.elapsed() >= Duration::from_millis(1500),
            "the busy worker had its shutdown_timeout to finish ({:?})",
            killed.elapsed()
        );
    }
}

// Issue 12, item 3: a console `kill` and a lowered max end what a worker process started
// (a command's `sleep 1000 &`), not only the process: nothing is left in its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_kill_or_a_lowered_max_ends_what_a_worker_started() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let port = common::free_port();
    let host = Host::start(
        &[server.addr().to_string()],
        "interval = 0",
        &format!(
            "[console]\nlisten = \"127.0.0.1:{port}\"\n\
             [[jobs]]\nname = \"cmd\"\ncommand = [\"sh\", \"-c\", \"sleep 1000 >/dev/null 2>&1 & sleep 0.3; cat\"]\n\
             min_processes = 2\nmax_processes = 2\n"
        ),
    );
    let workers = host.wait_workers("cmd", 2, LIMIT);
    assert!(common::wait_for_status(&server.addr(), "cmd", |s| s.available_workers == 2).await);
    // Two jobs at once, one for each process: each leaves a `sleep 1000` in its group.
    tokio::join!(
        expect_result(server.addr(), "cmd", "a", "a"),
        expect_result(server.addr(), "cmd", "b", "b")
    );
    let groups = groups_of(&workers);
    assert_eq!(groups, workers, "every worker process leads its own group");
    assert!(
        poll_until(LIMIT, || groups
            .iter()
            .all(|&g| members_of(&[g]).len() >= 2)),
        "each process and its sleep: {:?}",
        members_of(&groups)
    );
    let mut console = common::console::Console::connect(port);
    assert_eq!(console.cmd(&format!("kill {}", workers[0])), "OK\r\n.\r\n");
    assert!(
        poll_until(LIMIT, || members_of(&[groups[0]]).is_empty()),
        "left behind after `kill`: {:?}",
        members_of(&[groups[0]])
    );
    assert_eq!(
        members_of(&[groups[1]]).len(),
        2,
        "the other process is untouched"
    );
    assert_eq!(console.cmd("set_processes cmd 0 0"), "OK\r\n.\r\n");
    assert!(
        poll_until(LIMIT, || members_of(&[groups[1]]).is_empty()),
        "left behind after a lowered max: {:?}",
        members_of(&[groups[1]])
    );
    host.wait_workers("cmd", 0, LIMIT);
}

// Found trying issue 12: with `[server] enabled = false` (the setup for gearmand) every stop
// waited 5 s for a built-in job server that did not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_the_built_in_server_stops_at_once() {
    let gearmand = require_gearmand!();
    let mut host = Host::start(
        &[gearmand.addr().to_string()],
        "interval = 0",
        "[[jobs]]\nname = \"e\"\nworker = \"echo\"\n",
    );
    host.wait_workers("e", 1, LIMIT);
    let asked = Instant::now();
    host.signal(Signal::SIGTERM);
    assert!(host.wait_exit(LIMIT).success());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopping idle workers took {:?}\n{}",
        asked.elapsed(),
        host.log()
    );
}

/// `max_memory`: a process whose memory passes it finishes its job (its client gets the
/// result) and is then replaced; one below it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_over_max_memory_is_replaced_after_its_job() {
    if !common::perl_gearman_available() {
        return;
    }
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let host = Host::start(
        &[server.addr().to_string()],
        "interval = 0",
        "[[jobs]]\nname = \"leaky\"\nprogram = [\"perl\", \"tests/programs/leaky.pl\"]\n\
         min_processes = 1\nmax_processes = 1\nmax_memory = \"50M\"\n\
         [[jobs]]\nname = \"tidy\"\nprogram = [\"perl\", \"tests/programs/leaky.pl\"]\n\
         min_processes = 1\nmax_processes = 1\nmax_memory = \"1G\"\n",
    );
    let leaky = host.wait_workers("leaky", 1, LIMIT)[0];
    let tidy = host.wait_workers("tidy", 1, LIMIT)[0];
    assert!(common::wait_for_status(&server.addr(), "leaky", |s| s.available_workers == 1).await);
    assert!(common::wait_for_status(&server.addr(), "tidy", |s| s.available_workers == 1).await);
    // Each job keeps 40 MiB and takes 1.5 s: the host notices during the job.
    let client = Client::new(vec![server.addr()], ClientOptions::default()).unwrap();
    let (a, b) = tokio::join!(
        client.run(JobRequest::new("leaky", "first")),
        client.run(JobRequest::new("tidy", "second"))
    );
    assert_eq!(
        a.unwrap(),
        common::complete("first"),
        "the job in hand finishes"
    );
    assert_eq!(b.unwrap(), common::complete("second"));
    host.wait_log(
        &format!(
            "({leaky}) [leaky] resident memory over max_memory; replacing the process after its current job"
        ),
        LIMIT,
    );
    assert!(
        poll_until(LIMIT, || {
            let now = host.workers("leaky");
            now.len() == 1 && now[0] != leaky
        }),
        "replaced: {:?}\n{}",
        host.workers("leaky"),
        host.log()
    );
    // Two more memory checks: the one under its limit stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(host.workers("tidy"), vec![tidy]);
    assert!(
        !host
            .log()
            .contains(&format!("({tidy}) [tidy] resident memory"))
    );
    // A fresh process (about 30 MiB of Perl and its keeper) is not judged before its first
    // job, so the replacement stays too.
    assert_eq!(host.workers("leaky").len(), 1);
    assert_eq!(
        host.log()
            .matches("resident memory over max_memory")
            .count(),
        1,
        "{}",
        host.log()
    );
}

/// Found under load (issue 15): the host listened before it handled signals, so a SIGTERM
/// sent as soon as a port answered could end it by the default action, workers orphaned.
#[test]
fn a_stop_as_soon_as_the_host_listens_is_a_graceful_one() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    for round in 0..3 {
        let port = common::free_port();
        let mut host = Host::start(
            &[server.addr().to_string()],
            "",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nmin_processes = 1\n"
            ),
        );
        assert!(poll_until(LIMIT, || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()));
        host.signal(Signal::SIGTERM);
        let status = host.wait_exit(LIMIT);
        assert!(
            status.success(),
            "round {round}: {status:?}\n{}",
            host.log()
        );
        host.wait_log("stopped", LIMIT);
    }
}

// Issue 18, item 6: `max_spare` (Parallel::Prefork::SpareWorkers' max_spare_workers). Idle
// processes past it are stopped at once, not after max_idle_time.
both_servers! {
    async fn idle_processes_past_max_spare_are_stopped_at_once(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 1\nmax_processes = 4\nmax_spare = 1\nmax_idle_time = 300\n",
        );
        host.wait_workers("nap", 1, LIMIT);
        let client = client(server.addr());
        let mut jobs = Vec::new();
        for _ in 0..4 {
            jobs.push(client.submit(JobRequest::new("nap", "2500")).await.unwrap());
        }
        host.wait_workers("nap", 4, LIMIT);
        for job in jobs {
            let outcome = tokio::time::timeout(LIMIT, job.wait()).await.unwrap().unwrap();
            assert_eq!(outcome, JobOutcome::Complete(Bytes::from("slept 2500")));
        }
        let done = Instant::now();
        assert!(
            poll_until(LIMIT, || host.workers("nap").len() == 1),
            "max_spare = 1 (min 1): {:?}",
            host.workers("nap")
        );
        assert!(done.elapsed() < Duration::from_secs(10), "long before max_idle_time");
        host.wait_log("scale down: more idle processes than max_spare", LIMIT);
    }
}

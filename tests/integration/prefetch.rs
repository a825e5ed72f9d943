//! Issue 16, item 1: prefetch. A worker process of short jobs asks for the next job on a
//! second connection while one runs; a job held that way is given back when the job ahead of
//! it runs long (also when that job blocks its thread), when the process stops, dies or
//! overruns its timeout — never lost, never run twice. Jobs go in through the `gearman` CLI
//! (the C client), against gearmand and the built-in server.

use crate::common::host::{Host, config_dir};
use crate::common::{self, poll_until, submit_lines, wait_for_status};
use geardriver::gearman::{AdminClient, AdminCommand, AdminReply, ServerAddr};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|n| n.to_string()).collect()
}

fn repeated(line: &str, times: usize) -> Vec<String> {
    vec![line.to_string(); times]
}

/// How many connections to the job server carry a client id of `pool`'s processes.
async fn connections_of(addr: &ServerAddr, pool: &str) -> usize {
    let mut admin = AdminClient::connect(addr, LIMIT).await.unwrap();
    let AdminReply::Workers(rows) = admin.execute(&AdminCommand::Workers).await.unwrap() else {
        panic!("not a workers reply")
    };
    let marker = format!(":{pool}:");
    rows.iter()
        .filter(|r| {
            r.client_id
                .as_deref()
                .is_some_and(|id| id.contains(&marker))
        })
        .count()
}

/// A command job that appends its workload to `ran` in `dir` (and sleeps 5 s for "slow").
fn recorder(dir: &Path, name: &str, extra: &str) -> String {
    let ran = dir.join("ran");
    format!(
        "[[jobs]]\nname = \"{name}\"\ncommand = [\"sh\", \"-c\", \"read x; echo $x >> {}; if [ $x = slow ]; then sleep 5; fi; echo ok\"]\nprefetch = true\nmin_processes = 2\nmax_processes = 2\n{extra}",
        ran.display()
    )
}

/// Each line of `dir/ran`, counted.
fn runs(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("ran")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

both_servers! {
    async fn a_process_of_short_jobs_fetches_the_next_on_a_second_connection(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"quick\"\nworker = \"echo\"\n\
             [[jobs]]\nname = \"plain\"\nworker = \"echo\"\nprefetch = false\n",
        );
        host.wait_workers("quick", 1, LIMIT);
        host.wait_workers("plain", 1, LIMIT);
        for function in ["quick", "plain"] {
            if !submit_lines(server.port, function, &[], &numbered(1, 200)) {
                return;
            }
            assert!(wait_for_status(&server.addr(), function, |r| r.total == 0).await);
        }
        assert_eq!(
            connections_of(&server.addr(), "quick").await,
            2,
            "a process of short jobs keeps a second connection for the next job"
        );
        assert_eq!(connections_of(&server.addr(), "plain").await, 1, "prefetch = false");
    }
}

both_servers! {
    async fn a_job_held_behind_one_that_runs_long_is_given_back(server) {
        // `block` holds its thread: only the prefetch thread can give the held job back.
        let (dir, config) = config_dir(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"mix\"\nworker = \"block\"\nmin_processes = 2\nmax_processes = 2\n",
        );
        // Short jobs, one of 3 s, and short ones behind it, queued before the processes
        // start: they drain them in a row, so they prefetch (a process that finds the queue
        // empty between jobs does not: an idle one would take the next job at once).
        let mut lines = repeated("0", 100);
        lines.push("3000".into());
        lines.extend(repeated("0", 20));
        if !submit_lines(server.port, "mix", &[], &lines) {
            return;
        }
        let host = Host::start_with_env(dir, config, &[("GEARDRIVER_LOG", "debug")]);
        let started = Instant::now();
        // Everything but the long job is done by the other process while it runs.
        assert!(
            wait_for_status(&server.addr(), "mix", |r| r.total == 1 && r.running == 1).await,
            "the long job is left alone"
        );
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(2500),
            "the short jobs behind the long one were done {waited:?} after the host started, \
             not while it ran"
        );
        host.wait_log("gave a prefetched job back to the job server: the job ahead of it ran long", LIMIT);
        assert!(wait_for_status(&server.addr(), "mix", |r| r.total == 0).await);
    }
}

both_servers! {
    async fn a_process_stopped_or_killed_mid_stream_loses_no_job(server) {
        let (dir, config) = config_dir(&[server.addr().to_string()], "interval = 0", "");
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).unwrap() + &recorder(dir.path(), "rec", ""),
        )
        .unwrap();
        let ran = dir.path().to_path_buf();
        let host = Host::start_with(dir, config);
        let first = host.wait_workers("rec", 2, LIMIT);
        if !submit_lines(server.port, "rec", &[], &numbered(1, 600)) {
            return;
        }
        let done = |n: usize| poll_until(LIMIT, || runs(&ran).len() >= n);
        assert!(done(100));
        // Stopped: it finishes its job and gives the held one back.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[0] as i32), Signal::SIGTERM)
            .unwrap();
        assert!(done(250));
        // Killed: the kernel closes its connections; the job servers queue its jobs again.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[1] as i32), Signal::SIGKILL)
            .unwrap();
        assert!(
            wait_for_status(&server.addr(), "rec", |r| r.total == 0).await,
            "every job ran"
        );
        let counts = runs(&ran);
        let missing: Vec<_> = numbered(1, 600)
            .into_iter()
            .filter(|n| !counts.contains_key(n))
            .collect();
        assert!(missing.is_empty(), "never ran: {missing:?}");
        // Only the job the killed process was running may have run twice.
        let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
        assert!(twice.len() <= 1, "ran more than once: {twice:?}");
    }
}

both_servers! {
    async fn a_job_held_behind_one_that_overruns_its_timeout_runs_once_at_once(server) {
        let Some(mut cli) = common::gearman_cli() else {
            return;
        };
        let (dir, config) = config_dir(&[server.addr().to_string()], "interval = 0", "");
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).unwrap() + &recorder(dir.path(), "rec", "timeout = 2\n"),
        )
        .unwrap();
        let ran = dir.path().to_path_buf();
        let host = Host::start_with(dir, config);
        host.wait_workers("rec", 2, LIMIT);
        if !submit_lines(server.port, "rec", &[], &numbered(1, 100)) {
            return;
        }
        // The slow job, from a foreground client, queued behind the first hundred.
        let port = server.port.to_string();
        let slow = std::thread::spawn(move || {
            cli.args(["-h", "127.0.0.1", "-p", &port, "-f", "rec", "slow"])
                .output()
                .unwrap()
        });
        assert!(poll_until(LIMIT, || runs(&ran).contains_key("slow")));
        let started = Instant::now();
        submit_lines(server.port, "rec", &[], &numbered(101, 120));
        assert!(
            poll_until(LIMIT, || (1..=120).all(|n| runs(&ran).contains_key(&n.to_string()))),
            "every job ran"
        );
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(1500),
            "the jobs behind the slow one ran {waited:?} after it started, not while it ran"
        );
        let out = slow.join().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("timeout"),
            "the client of the overrunning job hears why: {said}"
        );
        assert!(wait_for_status(&server.addr(), "rec", |r| r.total == 0).await);
        let twice: Vec<_> = runs(&ran).into_iter().filter(|(_, c)| *c > 1).collect();
        assert!(twice.is_empty(), "ran more than once: {twice:?}");
        host.wait_log("timeout", LIMIT);
    }
}

// Found trying issue 16: a job given back (its connection shut down) counted as a retry, as if
// a worker had died holding it, so with `job_retries = 1` a healthy job failed. The worker now
// says why it closes (ECHO_REQ "geardriver:give-back") and the built-in server queues the job
// again without counting. (gearmand counts one: see the next test for what keeps that rare.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_given_back_does_not_count_against_job_retries() {
    let server = common::JobServer::start_with(common::ServerKind::Builtin, &["--job-retries=1"])
        .expect("built-in server");
    let client = geardriver::gearman::Client::new(vec![server.addr()], Default::default()).unwrap();
    // Queued before any worker: the process drains them in a row, so it prefetches.
    for _ in 0..40 {
        client
            .submit(geardriver::gearman::JobRequest::new("nap", "0").background())
            .await
            .unwrap();
    }
    let long = client
        .submit(geardriver::gearman::JobRequest::new("nap", "300"))
        .await
        .unwrap();
    let short = client
        .submit(geardriver::gearman::JobRequest::new("nap", "1"))
        .await
        .unwrap();
    let (dir, config) = config_dir(
        &[server.addr().to_string()],
        "interval = 0",
        "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\n",
    );
    let host = Host::start_with_env(dir, config, &[("GEARDRIVER_LOG", "debug")]);
    let outcome = tokio::time::timeout(LIMIT, short.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, common::complete("slept 1"), "{}", host.log());
    let outcome = tokio::time::timeout(LIMIT, long.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, common::complete("slept 300"));
    // The short job was held behind the long one and given back.
    host.wait_log("gave a prefetched job back to the job server", LIMIT);
}

// Found trying issue 16: every process that stopped (max_jobs, max_lifetime, SIGTERM) gave its
// prefetched job back, which gearmand counts against `--job-retries`: with max_jobs = 10 and
// gearmand's `--job-retries 3`, 14 of 20,000 healthy jobs failed. Now a process does not
// prefetch a job it would not run (its last before max_jobs) and runs a held job before it
// exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_and_stopped_processes_fail_no_job() {
    for kind in [common::ServerKind::Gearmand, common::ServerKind::Builtin] {
        let Some(server) = common::JobServer::start_with(kind, &["--job-retries=1"]) else {
            continue;
        };
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"quick\"\nworker = \"echo\"\nmin_processes = 2\nmax_processes = 2\nmax_jobs = 10\n",
        );
        let first = host.wait_workers("quick", 2, LIMIT);
        let client =
            geardriver::gearman::Client::new(vec![server.addr()], Default::default()).unwrap();
        let mut jobs = Vec::new();
        for n in 0..600 {
            let request = geardriver::gearman::JobRequest::new("quick", n.to_string());
            jobs.push(client.submit(request).await.unwrap());
            if n == 300 {
                // And one told to stop mid-stream.
                if let Some(&pid) = host.workers("quick").iter().find(|p| first.contains(p)) {
                    let pid = nix::unistd::Pid::from_raw(pid as i32);
                    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                }
            }
        }
        for (n, job) in jobs.into_iter().enumerate() {
            let outcome = tokio::time::timeout(LIMIT, job.wait())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                outcome,
                common::complete(&n.to_string()),
                "{kind:?} job {n}"
            );
        }
    }
}

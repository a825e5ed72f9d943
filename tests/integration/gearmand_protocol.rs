//! Our client, our worker loop and our admin client against a real gearmand, and against
//! the peers nobody here wrote: the C `gearman` CLI as client and as worker.

use crate::common;

use bytes::Bytes;
use common::{
    ChildGuard, gearman_cli, handler, start_worker, start_worker_with, wait_for_status, wait_until,
};
use geardriver::gearman::admin::{AdminReply, MaxQueueLimits};
use geardriver::gearman::{
    Ability, AdminClient, AdminCommand, Client, ClientError, ClientOptions, JobEvent, JobFailure,
    JobOutcome, JobRequest, Priority,
};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const LIMIT: Duration = Duration::from_secs(15);

fn client(servers: Vec<geardriver::gearman::ServerAddr>) -> Client {
    Client::new(servers, ClientOptions::default()).unwrap()
}

fn reverse(data: &[u8]) -> Bytes {
    Bytes::from(
        String::from_utf8_lossy(data)
            .chars()
            .rev()
            .collect::<String>(),
    )
}

async fn run(client: &Client, request: JobRequest) -> JobOutcome {
    tokio::time::timeout(LIMIT, client.run(request))
        .await
        .expect("job finished in time")
        .expect("job ran")
}

both_servers! {
    async fn our_client_and_our_worker(gearmand) {
        let worker = start_worker(
            vec![gearmand.addr()],
            &["reverse"],
            handler(|job, _| async move { Ok(reverse(&job.data)) }),
        );
        let client = client(vec![gearmand.addr()]);
        for text in ["hello", "", "ünïcödé", "a\0b"] {
            let outcome = run(&client, JobRequest::new("reverse", text.to_string())).await;
            assert_eq!(
                outcome,
                JobOutcome::Complete(reverse(text.as_bytes())),
                "input {text:?}"
            );
        }
        // A payload far larger than one socket read.
        let big = "x".repeat(3 * 1024 * 1024);
        let outcome = run(&client, JobRequest::new("reverse", big.clone())).await;
        assert_eq!(outcome, JobOutcome::Complete(Bytes::from(big)));
        worker.stop().await;
    }
}

both_servers! {
    async fn our_client_with_the_c_worker(gearmand) {
        let Some(mut cli) = gearman_cli() else { return };
        let _worker = ChildGuard(
            cli.args([
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                &gearmand.port.to_string(),
                "-f",
                "upper",
                "--",
                "tr",
                "a-z",
                "A-Z",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gearman -w"),
        );
        let client = client(vec![gearmand.addr()]);
        let outcome = run(&client, JobRequest::new("upper", "shout this")).await;
        assert_eq!(outcome, JobOutcome::Complete(Bytes::from("SHOUT THIS")));
    }
}

both_servers! {
    async fn the_c_client_with_our_worker_process(gearmand) {
        let Some(mut cli) = gearman_cli() else { return };
        let _worker = ChildGuard(
            common::geardriver()
                .args([
                    "worker",
                    "--server",
                    &gearmand.addr().to_string(),
                    "--function",
                    "rev=reverse",
                ])
                .stderr(Stdio::null())
                .spawn()
                .expect("start geardriver worker"),
        );
        let registered = wait_for_status(&gearmand.addr(), "rev", |s| s.available_workers == 1).await;
        assert!(registered, "worker registered with gearmand");
        let output = cli
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &gearmand.port.to_string(),
                "-f",
                "rev",
                "stressed",
            ])
            .output()
            .expect("run gearman client");
        assert!(output.status.success(), "gearman client: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "desserts");
    }
}

both_servers! {
    async fn background_jobs_run_after_the_client_left(gearmand) {
        {
            let client = client(vec![gearmand.addr()]);
            for i in 0..50 {
                let job = client
                    .submit(JobRequest::new("bg", format!("job {i}")).background())
                    .await
                    .unwrap();
                assert!(!job.handle.handle.is_empty());
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let worker = start_worker(
            vec![gearmand.addr()],
            &["bg"],
            handler(move |job, _| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(job.data);
                    Ok(Bytes::new())
                }
            }),
        );
        assert!(wait_until(LIMIT, || async { seen.lock().unwrap().len() == 50 }).await);
        let mut got: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        got.sort();
        let mut want: Vec<String> = (0..50).map(|i| format!("job {i}")).collect();
        want.sort();
        assert_eq!(got, want);
        worker.stop().await;
    }
}

both_servers! {
    async fn a_high_job_submitted_after_lows_runs_first(gearmand) {
        let client = client(vec![gearmand.addr()]);
        for i in 0..5 {
            client
                .submit(
                    JobRequest::new("prio", format!("low {i}"))
                        .priority(Priority::Low)
                        .background(),
                )
                .await
                .unwrap();
        }
        client
            .submit(JobRequest::new("prio", "normal").background())
            .await
            .unwrap();
        client
            .submit(
                JobRequest::new("prio", "high")
                    .priority(Priority::High)
                    .background(),
            )
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = order.clone();
        let worker = start_worker(
            vec![gearmand.addr()],
            &["prio"],
            handler(move |job, _| {
                let record = record.clone();
                async move {
                    record
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&job.data).into_owned());
                    Ok(Bytes::new())
                }
            }),
        );
        assert!(wait_until(LIMIT, || async { order.lock().unwrap().len() == 7 }).await);
        let order = order.lock().unwrap().clone();
        assert_eq!(order[0], "high");
        assert_eq!(order[1], "normal");
        assert_eq!(order[2..], ["low 0", "low 1", "low 2", "low 3", "low 4"]);
        worker.stop().await;
    }
}

both_servers! {
    async fn jobs_with_one_unique_id_run_once_and_every_client_gets_the_result(gearmand) {
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (count, gate) = (runs.clone(), release.clone());
        let worker = start_worker(
            vec![gearmand.addr()],
            &["slow"],
            handler(move |job, _| {
                let (count, gate) = (count.clone(), gate.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(Bytes::from(format!(
                        "done {}",
                        String::from_utf8_lossy(&job.unique)
                    )))
                }
            }),
        );
        let first = client(vec![gearmand.addr()]);
        let second = client(vec![gearmand.addr()]);
        let a = first
            .submit(JobRequest::new("slow", "a").unique("same-id"))
            .await
            .unwrap();
        assert!(wait_until(LIMIT, || async { runs.load(Ordering::SeqCst) == 1 }).await);
        let b = second
            .submit(JobRequest::new("slow", "b").unique("same-id"))
            .await
            .unwrap();
        assert_eq!(a.handle.handle, b.handle.handle, "coalesced into one job");
        release.notify_one();
        let (a, b) = tokio::join!(a.wait(), b.wait());
        assert_eq!(
            a.unwrap(),
            JobOutcome::Complete(Bytes::from("done same-id"))
        );
        assert_eq!(
            b.unwrap(),
            JobOutcome::Complete(Bytes::from("done same-id"))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        worker.stop().await;
    }
}

both_servers! {
    async fn status_data_warnings_and_exceptions_reach_the_client(gearmand) {
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let worker = start_worker(
            vec![gearmand.addr()],
            &["chatty", "broken"],
            handler(move |job, updates| {
                let gate = gate.clone();
                async move {
                    if &job.function[..] == b"broken" {
                        return Err(JobFailure::Message(Bytes::from("it broke: disk on fire")));
                    }
                    updates.status(1, 4);
                    updates.data("part one;");
                    gate.notified().await;
                    updates.warning("careful");
                    updates.status(4, 4);
                    updates.data("part two");
                    Ok(Bytes::from("final"))
                }
            }),
        );
        let client = client(vec![gearmand.addr()]);
        let mut job = client.submit(JobRequest::new("chatty", "x")).await.unwrap();
        assert_eq!(
            job.next_event().await.unwrap().unwrap(),
            JobEvent::Status {
                numerator: 1,
                denominator: 4
            }
        );
        assert_eq!(
            job.next_event().await.unwrap().unwrap(),
            JobEvent::Data(Bytes::from("part one;"))
        );
        // GET_STATUS while the job runs.
        let status = client.get_status(&job.handle).await.unwrap();
        assert!(status.known && status.running);
        assert_eq!((status.numerator, status.denominator), (1, 4));
        release.notify_one();
        let mut rest = Vec::new();
        while let Some(event) = tokio::time::timeout(LIMIT, job.next_event()).await.unwrap() {
            rest.push(event.unwrap());
        }
        assert_eq!(
            rest,
            vec![
                JobEvent::Warning(Bytes::from("careful")),
                JobEvent::Status {
                    numerator: 4,
                    denominator: 4
                },
                JobEvent::Data(Bytes::from("part two")),
                JobEvent::Complete(Bytes::from("final")),
            ]
        );
        // Finished jobs are unknown to the server.
        let status = client.get_status(&job.handle).await.unwrap();
        assert!(!status.known);

        // Every client gets the message as a warning, then WORK_FAIL, whether it asked for
        // exceptions or not (WORK_EXCEPTION breaks clients through gearmand).
        let outcome = run(&client, JobRequest::new("broken", "x")).await;
        assert_eq!(
            outcome,
            JobOutcome::failed_with("it broke: disk on fire")
        );
        let plain = Client::new(
            vec![gearmand.addr()],
            ClientOptions {
                exceptions: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            run(&plain, JobRequest::new("broken", "x")).await,
            JobOutcome::failed_with("it broke: disk on fire")
        );
        worker.stop().await;
    }
}

both_servers! {
    async fn echo_status_unique_and_unreachable_servers(gearmand) {
        let client = client(vec![gearmand.addr()]);
        assert_eq!(
            client.echo(Bytes::from("ping\0pong")).await.unwrap(),
            Bytes::from("ping\0pong")
        );
        let job = client
            .submit(JobRequest::new("nobody", "x").unique("u-42").background())
            .await
            .unwrap();
        let status = client.get_status_unique(b"u-42").await.unwrap();
        assert!(status.known && !status.running);
        // gearmand answers STATUS_RES_UNIQUE with the unique id where STATUS_RES has the handle.
        assert_eq!(status.id, Bytes::from("u-42"));
        assert!(!job.handle.handle.is_empty());
        let unreachable = Client::new(
            vec![geardriver::gearman::ServerAddr::new(
                "127.0.0.1",
                common::free_port(),
            )],
            ClientOptions::default(),
        )
        .unwrap();
        let err = unreachable
            .submit(JobRequest::new("f", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}

both_servers! {
    async fn a_client_fails_over_to_the_next_server(gearmand) {
        let dead = geardriver::gearman::ServerAddr::new("127.0.0.1", common::free_port());
        let worker = start_worker(
            vec![gearmand.addr()],
            &["rev"],
            handler(|job, _| async move { Ok(reverse(&job.data)) }),
        );
        let client = client(vec![dead, gearmand.addr()]);
        for _ in 0..4 {
            assert_eq!(
                run(&client, JobRequest::new("rev", "abc")).await,
                JobOutcome::Complete(Bytes::from("cba"))
            );
        }
        worker.stop().await;
    }
}

both_servers! {
    async fn a_worker_serves_every_job_server(first) {
        let second = first.another();
        let worker = start_worker(
            vec![first.addr(), second.addr()],
            &["where"],
            handler(|job, _| async move { Ok(Bytes::from(job.server.to_string())) }),
        );
        for gearmand in [&first, &second] {
            let client = client(vec![gearmand.addr()]);
            for _ in 0..3 {
                let outcome = run(&client, JobRequest::new("where", "")).await;
                assert_eq!(
                    outcome,
                    JobOutcome::Complete(Bytes::from(gearmand.addr().to_string()))
                );
            }
        }
        worker.stop().await;
    }
}

both_servers! {
    async fn a_worker_reconnects_after_gearmand_restarts(gearmand) {
        #[allow(unused_mut)]
        let mut gearmand = gearmand;
        let worker = start_worker(
            vec![gearmand.addr()],
            &["rev"],
            handler(|job, _| async move { Ok(reverse(&job.data)) }),
        );
        let client1 = client(vec![gearmand.addr()]);
        assert_eq!(
            run(&client1, JobRequest::new("rev", "before")).await,
            JobOutcome::Complete(Bytes::from("erofeb"))
        );
        gearmand.restart();
        let client2 = client(vec![gearmand.addr()]);
        assert_eq!(
            run(&client2, JobRequest::new("rev", "after")).await,
            JobOutcome::Complete(Bytes::from("retfa"))
        );
        worker.stop().await;
    }
}

both_servers! {
    async fn stopping_a_worker_finishes_the_job_in_hand(gearmand) {
        let started = Arc::new(Notify::new());
        let signal = started.clone();
        let worker = start_worker(
            vec![gearmand.addr()],
            &["long"],
            handler(move |_, _| {
                let signal = signal.clone();
                async move {
                    signal.notify_one();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(Bytes::from("finished"))
                }
            }),
        );
        let client = client(vec![gearmand.addr()]);
        let job = client.submit(JobRequest::new("long", "")).await.unwrap();
        started.notified().await;
        worker.shutdown.cancel();
        assert_eq!(
            tokio::time::timeout(LIMIT, job.wait())
                .await
                .unwrap()
                .unwrap(),
            JobOutcome::Complete(Bytes::from("finished"))
        );
        worker.stop().await;
        // The stopped worker no longer takes jobs: a new job stays queued.
        client
            .submit(JobRequest::new("long", "").background())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut admin = AdminClient::connect(&gearmand.addr(), LIMIT).await.unwrap();
        let status = admin.status().await.unwrap();
        let long = status.iter().find(|s| s.function == "long").unwrap();
        assert_eq!(
            (long.total, long.running, long.available_workers),
            (1, 0, 0)
        );
    }
}

both_servers! {
    async fn can_do_timeout_is_sent_in_milliseconds(gearmand) {
        // gearmand (1.1.19+) reads the timeout in milliseconds, with a floor of one second, and
        // re-queues an overrun job: a second worker then gets the same job. The built-in
        // server fails it instead (PROTOCOL's CAN_DO_TIMEOUT).
        let stuck = Arc::new(Notify::new());
        let gate = stuck.clone();
        let slow = start_worker_with(
            vec![gearmand.addr()],
            vec![Ability::new("timed").with_timeout(Some(Duration::from_millis(1000)))],
            handler(move |_, _| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok(Bytes::from("slow"))
                }
            }),
        );
        let client = client(vec![gearmand.addr()]);
        let job = client.submit(JobRequest::new("timed", "x")).await.unwrap();
        assert!(wait_for_status(&gearmand.addr(), "timed", |s| s.running == 1).await);
        if gearmand.kind == common::ServerKind::Gearmand {
            // Back in the queue, nobody running it. (The second worker starts only now, so
            // that the outcome does not hang on how gearmand's timer wakes sleepers: once, in
            // a loaded run, the job was not picked up within 10 s; see issue 13's note.)
            assert!(
                wait_for_status(&gearmand.addr(), "timed", |s| s.running == 0 && s.total == 1).await
            );
        }
        let fast = start_worker(
            vec![gearmand.addr()],
            &["timed"],
            handler(|_, _| async { Ok(Bytes::from("fast")) }),
        );
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), job.wait())
            .await
            .expect("settled within 10 s")
            .unwrap();
        match gearmand.kind {
            // gearmand re-queues the overrun job: the second worker completes it.
            common::ServerKind::Gearmand => assert_eq!(outcome, JobOutcome::Complete(Bytes::from("fast"))),
            // The built-in server fails it, as PROTOCOL describes CAN_DO_TIMEOUT.
            common::ServerKind::Builtin => {
                assert!(matches!(outcome, JobOutcome::Fail { .. }), "{outcome:?}");
                assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            }
        }
        stuck.notify_one();
        slow.stop().await;
        fast.stop().await;
    }
}

both_servers! {
    async fn admin_replies_are_parsed(gearmand) {
        let worker = start_worker_with(
            vec![gearmand.addr()],
            vec![Ability::new("adm")],
            handler(|_, _| async { Ok(Bytes::new()) }),
        );
        assert!(wait_for_status(&gearmand.addr(), "adm", |s| s.available_workers == 1).await);
        let mut admin = AdminClient::connect(&gearmand.addr(), LIMIT).await.unwrap();
        worker.stop().await;
        let client = client(vec![gearmand.addr()]);
        let job = client
            .submit(
                JobRequest::new("queued", "x")
                    .unique("uniq-1")
                    .priority(Priority::High)
                    .background(),
            )
            .await
            .unwrap();
        client
            .submit(JobRequest::new("queued", "y").background())
            .await
            .unwrap();

        let status = admin.status().await.unwrap();
        let queued = status.iter().find(|s| s.function == "queued").unwrap();
        assert_eq!(
            (
                queued.total,
                queued.running,
                queued.available_workers,
                queued.waiting()
            ),
            (2, 0, 0, 2)
        );

        let AdminReply::Version(version) = admin.execute(&AdminCommand::Version).await.unwrap() else {
            panic!()
        };
        match gearmand.kind {
            common::ServerKind::Gearmand => assert!(version.starts_with("1."), "{version}"),
            common::ServerKind::Builtin => assert!(version.starts_with("geardriver "), "{version}"),
        }
        assert_eq!(
            admin.execute(&AdminCommand::Getpid).await.unwrap(),
            AdminReply::Pid(gearmand.pid())
        );
        let AdminReply::Workers(workers) = admin.execute(&AdminCommand::Workers).await.unwrap() else {
            panic!()
        };
        assert!(workers.iter().all(|w| w.address == "127.0.0.1"));
        let AdminReply::PriorityStatus(rows) =
            admin.execute(&AdminCommand::PriorityStatus).await.unwrap()
        else {
            panic!()
        };
        let row = rows.iter().find(|r| r.function == "queued").unwrap();
        assert_eq!((row.high, row.normal, row.low), (1, 1, 0));
        let AdminReply::ShowJobs(jobs) = admin.execute(&AdminCommand::ShowJobs).await.unwrap() else {
            panic!()
        };
        assert!(
            jobs.iter()
                .any(|j| j.handle.as_bytes() == job.handle.handle.as_ref() && j.job_queued)
        );
        let AdminReply::ShowUniqueJobs(uniques) =
            admin.execute(&AdminCommand::ShowUniqueJobs).await.unwrap()
        else {
            panic!()
        };
        assert!(uniques.iter().any(|u| u == "uniq-1"), "{uniques:?}");
        let maxqueue = AdminCommand::MaxQueue {
            function: "queued".into(),
            limits: MaxQueueLimits::All(10),
        };
        assert_eq!(admin.execute(&maxqueue).await.unwrap(), AdminReply::Ok);
        let cancel = AdminCommand::CancelJob {
            handle: String::from_utf8_lossy(&job.handle.handle).into_owned(),
        };
        assert_eq!(admin.execute(&cancel).await.unwrap(), AdminReply::Ok);
        // gearmand cancels lazily: the job is marked ignored and no longer queued.
        let AdminReply::ShowJobs(jobs) = admin.execute(&AdminCommand::ShowJobs).await.unwrap() else {
            panic!()
        };
        let cancelled = jobs
            .iter()
            .find(|j| j.handle.as_bytes() == job.handle.handle.as_ref())
            .unwrap();
        assert!(
            cancelled.ignore_job && !cancelled.job_queued,
            "{cancelled:?}"
        );
        let unknown = AdminCommand::CancelJob {
            handle: "H:nowhere:1".into(),
        };
        let err = admin.execute(&unknown).await.unwrap_err();
        assert!(err.to_string().contains("UNKNOWN_JOB"), "{err}");
    }
}

/// A "job server" that answers every connection with `garbage`, counting connections.
async fn garbage_server(
    garbage: &'static [u8],
) -> (geardriver::gearman::ServerAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(garbage).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (
        geardriver::gearman::ServerAddr::new("127.0.0.1", port),
        connections,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_garbage_gets_an_error_not_a_crash() {
    // A client: the submit fails with the reason.
    let (addr, _) = garbage_server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let client = Client::new(vec![addr], ClientOptions::default()).unwrap();
    let err = tokio::time::timeout(LIMIT, client.submit(JobRequest::new("f", "x")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    // A worker: drops the connection and keeps retrying (with backoff), never panics.
    let (addr, connections) = garbage_server(b"\0RES\0\0\0\x2a\0\0\0\x02no").await;
    let worker = start_worker(
        vec![addr],
        &["f"],
        handler(|job, _| async move { Ok(job.data) }),
    );
    assert!(
        wait_until(LIMIT, || {
            let n = connections.load(Ordering::SeqCst);
            async move { n >= 3 }
        })
        .await,
        "the worker reconnected"
    );
    worker.stop().await;
}

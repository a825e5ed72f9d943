//! The built-in job server beyond conformance: what happens under many sleeping workers,
//! bad peers, limits and shutdown — against both servers where the behaviour is shared — and
//! the embeddable `run(listener, settings, shutdown)`.

use crate::common;

use bytes::Bytes;
use common::{handler, start_worker, wait_for_status};
use futures_util::{SinkExt, StreamExt};
use geardriver::gearman::codec::ClientCodec;
use geardriver::gearman::server::{self, Settings};
use geardriver::gearman::{
    Client, ClientOptions, JobOutcome, JobRequest, Packet, Priority, ServerAddr,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

fn client(addr: ServerAddr) -> Client {
    Client::new(vec![addr], ClientOptions::default()).unwrap()
}

async fn raw(port: u16) -> Framed<TcpStream, ClientCodec> {
    Framed::new(
        TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        ClientCodec::default(),
    )
}

both_servers! {
    async fn no_wake_up_is_lost_with_many_sleeping_workers(gearmand) {
        let done = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..30)
            .map(|_| {
                let done = done.clone();
                start_worker(vec![gearmand.addr()], &["many"], handler(move |job, _| {
                    let done = done.clone();
                    async move {
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(job.data)
                    }
                }))
            })
            .collect();
        assert!(wait_for_status(&gearmand.addr(), "many", |s| s.available_workers == 30).await);
        // Every worker is asleep now; jobs come in bursts and one at a time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = Arc::new(client(gearmand.addr()));
        for round in 0..5 {
            let jobs: Vec<_> = (0..40)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move { client.run(JobRequest::new("many", format!("{round}-{i}"))).await })
                })
                .collect();
            for (i, job) in jobs.into_iter().enumerate() {
                let outcome = tokio::time::timeout(LIMIT, job).await.expect("no lost wake-up").unwrap().unwrap();
                assert_eq!(outcome, JobOutcome::Complete(Bytes::from(format!("{round}-{i}"))));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let single = tokio::time::timeout(LIMIT, client.run(JobRequest::new("many", "alone"))).await.unwrap().unwrap();
            assert_eq!(single, JobOutcome::Complete(Bytes::from("alone")));
        }
        assert_eq!(done.load(Ordering::SeqCst), 5 * 41);
        for w in workers {
            w.stop().await;
        }
    }
}

both_servers! {
    async fn a_peer_sending_garbage_is_disconnected_alone(gearmand) {
        let worker = start_worker(vec![gearmand.addr()], &["ok"], handler(|job, _| async move { Ok(job.data) }));
        let good = client(gearmand.addr());
        assert_eq!(good.run(JobRequest::new("ok", "before")).await.unwrap(), JobOutcome::Complete(Bytes::from("before")));
        let bad_inputs: Vec<(&[u8], &str)> = vec![
            (b"\0REQ\0\0\0\x07\x7f\xff\xff\xff", "PACKET_TOO_LARGE"), // an absurd length
            (b"\0BAD\0\0\0\x07\0\0\0\0", "INVALID_MAGIC"),           // a bad magic
            (b"\0REQ\0\0\0\x05\0\0\0\0", "INVALID_COMMAND"),         // type 5 does not exist
            (b"\0REQ\0\0\0\xff\0\0\0\0", "INVALID_COMMAND"),         // nor does 255
            (b"\0RES\0\0\0\x06\0\0\0\0", "INVALID_MAGIC"),           // a response sent to a server
            (b"\0REQ\0\0\0\x0b\0\0\0\x01x", "INVALID_MAGIC"),         // JOB_ASSIGN is not a request
            (b"\0REQ\0\0\0\x0c\0\0\0\x05h\0x\0y", "INVALID_PACKET"), // WORK_STATUS with words
        ];
        for (bytes, code) in bad_inputs {
            let mut stream = TcpStream::connect(("127.0.0.1", gearmand.port)).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            if gearmand.kind == common::ServerKind::Builtin {
                // The built-in server says why, then closes this connection.
                let mut reply = Vec::new();
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut reply))
                    .await
                    .expect("closed within 3 s")
                    .unwrap();
                let mut buf = bytes::BytesMut::from(&reply[..]);
                let frame = geardriver::gearman::codec::decode_frame(&mut buf, 1 << 20).unwrap().expect("an ERROR packet");
                let Packet::Error { code: got, text } = frame.packet else { panic!("{frame:?}") };
                assert_eq!(&got[..], code.as_bytes(), "{}", String::from_utf8_lossy(&text));
                assert!(buf.is_empty(), "nothing after the ERROR");
            }
            // Everyone else is served as before.
            assert_eq!(good.run(JobRequest::new("ok", "after")).await.unwrap(), JobOutcome::Complete(Bytes::from("after")));
        }
        // An endless admin line.
        let mut stream = TcpStream::connect(("127.0.0.1", gearmand.port)).await.unwrap();
        let _ = stream.write_all(&vec![b's'; 64 * 1024]).await;
        assert_eq!(good.run(JobRequest::new("ok", "still")).await.unwrap(), JobOutcome::Complete(Bytes::from("still")));
        worker.stop().await;
    }
}

both_servers! {
    async fn a_perl_client_and_the_gearman_tools_work_unchanged(gearmand) {
        let worker = start_worker(vec![gearmand.addr()], &["perl_rev"], handler(|job, _| async move {
            Ok(Bytes::from(String::from_utf8_lossy(&job.data).chars().rev().collect::<String>()))
        }));
        assert!(wait_for_status(&gearmand.addr(), "perl_rev", |s| s.available_workers == 1).await);
        if common::perl_gearman_available() {
            let script = format!(
                "use Gearman::Client; my $c = Gearman::Client->new(job_servers => ['127.0.0.1:{}']); \
                 my $r = $c->do_task('perl_rev', 'from perl'); print $$r;",
                gearmand.port
            );
            let out = tokio::task::spawn_blocking(move || std::process::Command::new("perl").args(["-e", &script]).output().unwrap())
                .await
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "lrep morf", "{out:?}");
        }
        if common::gearman_cli().is_some() {
            let port = gearmand.port.to_string();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("gearadmin").args(["-h", "127.0.0.1", "-p", &port, "--status"]).output().unwrap()
            })
            .await
            .unwrap();
            assert!(String::from_utf8_lossy(&out.stdout).contains("perl_rev\t0\t0\t1"), "{out:?}");
        }
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_goes_back_to_the_head_of_its_queue() {
    let server = common::JobServer::start(common::ServerKind::Builtin).unwrap();
    let client = client(server.addr());
    for data in ["first", "second", "third"] {
        client
            .submit(JobRequest::new("requeue", data).background())
            .await
            .unwrap();
    }
    let mut doomed = raw(server.port).await;
    doomed
        .send(Packet::CanDo {
            function: Bytes::from("requeue"),
        })
        .await
        .unwrap();
    doomed.send(Packet::GrabJob).await.unwrap();
    let Some(Ok(Packet::JobAssign { data, .. })) = doomed.next().await else {
        panic!()
    };
    assert_eq!(data, Bytes::from("first"));
    drop(doomed);
    // The server notices the closed connection on its own time (on another thread than the
    // next worker's, maybe): wait until it took the job back.
    assert!(common::wait_for_status(&server.addr(), "requeue", |r| r.running == 0).await);
    let mut next = raw(server.port).await;
    next.send(Packet::CanDo {
        function: Bytes::from("requeue"),
    })
    .await
    .unwrap();
    for expected in ["first", "second", "third"] {
        next.send(Packet::GrabJob).await.unwrap();
        let Some(Ok(Packet::JobAssign { data, handle, .. })) = next.next().await else {
            panic!()
        };
        assert_eq!(data, Bytes::from(expected));
        next.send(Packet::WorkComplete {
            handle,
            data: Bytes::new(),
        })
        .await
        .unwrap();
    }
    // The show jobs retries column counts the requeue (checked while one is held).
    client
        .submit(JobRequest::new("requeue", "counted").background())
        .await
        .unwrap();
    let mut holder = raw(server.port).await;
    holder
        .send(Packet::CanDo {
            function: Bytes::from("requeue"),
        })
        .await
        .unwrap();
    holder.send(Packet::GrabJob).await.unwrap();
    let _ = holder.next().await;
    drop(holder);
    assert!(
        wait_for_status(&server.addr(), "requeue", |s| s.total == 1
            && s.running == 0)
        .await
    );
    let mut admin = geardriver::gearman::AdminClient::connect(&server.addr(), LIMIT)
        .await
        .unwrap();
    let geardriver::gearman::AdminReply::ShowJobs(rows) = admin
        .execute(&geardriver::gearman::AdminCommand::ShowJobs)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].retries, 1);
}

// Issue 11, defect 4: CAN_DO_TIMEOUT `2` failed the job after 2 ms. gearmand reads it in
// milliseconds with a one-second floor; so does the built-in server, which then fails the
// job (gearmand re-queues it) and names the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_do_timeout_has_gearmands_unit_and_floor() {
    let server = common::JobServer::start(common::ServerKind::Builtin).unwrap();
    let mut worker = raw(server.port).await;
    for (function, timeout_ms) in [("floored", 2), ("timed", 1500)] {
        worker
            .send(Packet::CanDoTimeout {
                function: Bytes::from(function),
                timeout_ms,
            })
            .await
            .unwrap();
    }
    for (function, at_least, at_most) in [("floored", 950, 1800), ("timed", 1450, 2300)] {
        let client = client(server.addr());
        let started = std::time::Instant::now();
        let job = tokio::spawn(async move { client.run(JobRequest::new(function, "x")).await });
        assert!(wait_for_status(&server.addr(), function, |s| s.total == 1).await);
        worker.send(Packet::GrabJob).await.unwrap();
        let Some(Ok(Packet::JobAssign { .. })) = worker.next().await else {
            panic!("no job for {function}")
        };
        let outcome = tokio::time::timeout(LIMIT, job)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let took = started.elapsed().as_millis();
        let message = outcome.failure_message().cloned().unwrap_or_default();
        assert!(
            matches!(outcome, JobOutcome::Fail { .. }) && message.starts_with(b"timeout"),
            "{function}: {outcome:?}"
        );
        assert!(
            (at_least..at_most).contains(&took),
            "{function} failed after {took} ms"
        );
    }
}

// Issue 11, defect 3: a poison job (its worker dies every time) was handed out forever. The
// built-in server fails it after `job_retries` hand-outs (3 by default, gearmand's
// `--job-retries`), telling its clients why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_workers_keep_dying_fails_after_job_retries() {
    let server = common::JobServer::start(common::ServerKind::Builtin).unwrap();
    let client = client(server.addr());
    let job = tokio::spawn(async move { client.run(JobRequest::new("poison", "x")).await });
    assert!(wait_for_status(&server.addr(), "poison", |s| s.total == 1).await);
    let mut handed_out = 0;
    let outcome = loop {
        let mut doomed = raw(server.port).await;
        doomed
            .send(Packet::CanDo {
                function: Bytes::from("poison"),
            })
            .await
            .unwrap();
        doomed.send(Packet::GrabJob).await.unwrap();
        match tokio::time::timeout(LIMIT, doomed.next()).await.unwrap() {
            Some(Ok(Packet::JobAssign { .. })) => handed_out += 1,
            Some(Ok(Packet::NoJob)) => {
                break tokio::time::timeout(LIMIT, job)
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
            }
            other => panic!("{other:?}"),
        }
        assert!(handed_out <= 3, "handed out {handed_out} times");
        drop(doomed);
        // Let the server see the death before the next worker asks.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(handed_out, 3);
    let message = outcome.failure_message().cloned().unwrap_or_default();
    assert!(
        message.starts_with(b"job_retries: the job was handed out 3 times"),
        "{outcome:?}"
    );
    assert!(wait_for_status(&server.addr(), "poison", |s| s.total == 0).await);
}

/// A foreground job of `function` with no data.
fn foreground(function: &'static str) -> Packet {
    Packet::Submit {
        priority: Priority::Normal,
        background: false,
        function: Bytes::from(function),
        unique: Bytes::new(),
        data: Bytes::new(),
    }
}

/// A worker connection that has taken the (only) job of `function`.
async fn grabbing_worker(port: u16, function: &'static str) -> Framed<TcpStream, ClientCodec> {
    let mut worker = raw(port).await;
    worker
        .send(Packet::CanDo {
            function: Bytes::from(function),
        })
        .await
        .unwrap();
    worker.send(Packet::GrabJob).await.unwrap();
    let _ = worker.next().await;
    worker
}

/// The embeddable server in this test's runtime.
async fn embedded(
    settings: Settings,
) -> (ServerAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::run(listener, settings, shutdown.clone()));
    (ServerAddr::new("127.0.0.1", addr.port()), shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_keeps_its_limits_and_tells_clients_when_it_stops() {
    let settings = Settings {
        max_connections: 6,
        max_packet: 1024,
        max_queued_replies: 16,
        ..Settings::default()
    };
    let (addr, shutdown, task) = embedded(settings).await;
    let worker = start_worker(
        vec![addr.clone()],
        &["e"],
        handler(|job, _| async move { Ok(job.data) }),
    );
    let c = client(addr.clone());
    assert_eq!(
        c.run(JobRequest::new("e", "x")).await.unwrap(),
        JobOutcome::Complete(Bytes::from("x"))
    );
    // A packet over the cap: that connection goes.
    let big = c.run(JobRequest::new("e", vec![b'x'; 2048])).await;
    assert!(big.is_err(), "{big:?}");
    let c = client(addr.clone());
    assert_eq!(
        c.run(JobRequest::new("e", "y")).await.unwrap(),
        JobOutcome::Complete(Bytes::from("y"))
    );
    // Connections beyond the cap are closed at once; the others are unaffected. Open now:
    // the worker's and `c`'s (the first client's was closed for its big packet).
    let mut extra = Vec::new();
    for _ in 0..5 {
        extra.push(
            TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .unwrap(),
        );
    }
    let mut buf = [0u8; 16];
    let refused = tokio::time::timeout(LIMIT, extra[4].read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(refused, Ok(0) | Err(_)),
        "the 7th connection is refused: {refused:?}"
    );
    assert_eq!(
        c.run(JobRequest::new("e", "z")).await.unwrap(),
        JobOutcome::Complete(Bytes::from("z"))
    );
    drop(extra);
    drop(c);
    // A client that does not read its replies is dropped when its queue is full. (The slots
    // of the connections just dropped come back once the server has seen them close.)
    let mut attempts = 0;
    let (mut reader, handle) = loop {
        let mut reader = raw(addr.port).await;
        reader.send(foreground("flood")).await.unwrap();
        match reader.next().await {
            Some(Ok(Packet::JobCreated { handle })) => break (reader, handle),
            other => {
                attempts += 1;
                assert!(attempts < 100, "no connection slot came back: {other:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut flooder = grabbing_worker(addr.port, "flood").await;
    // The reader never reads again: WORK_DATA piles up (and the kernel buffers fill).
    let chunk = Bytes::from(vec![b'd'; 1000]);
    for _ in 0..5_000 {
        if flooder
            .feed(Packet::WorkData {
                handle: handle.clone(),
                data: chunk.clone(),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = flooder.flush().await;
    let c = client(addr.clone());
    assert_eq!(
        c.run(JobRequest::new("e", "unaffected")).await.unwrap(),
        JobOutcome::Complete(Bytes::from("unaffected"))
    );
    // The reader was dropped: what reached its socket drains, then the connection ends,
    // well short of the 5,000 chunks.
    let mut chunks = 0;
    loop {
        match tokio::time::timeout(LIMIT, reader.next()).await {
            Ok(Some(Ok(_))) => chunks += 1,
            Ok(None) | Ok(Some(Err(_))) => break,
            Err(_) => panic!("the non-reading client was never dropped ({chunks} chunks read)"),
        }
    }
    assert!(chunks < 5_000, "{chunks}");

    // Shutdown: clients are told, connections close, run() returns.
    let mut listener_side = raw(addr.port).await;
    listener_side
        .send(Packet::EchoReq {
            data: Bytes::from("here"),
        })
        .await
        .unwrap();
    assert!(
        matches!(listener_side.next().await, Some(Ok(Packet::EchoRes { .. }))),
        "connected and served"
    );
    worker.stop().await;
    shutdown.cancel();
    let told = tokio::time::timeout(LIMIT, listener_side.next())
        .await
        .unwrap();
    assert!(
        matches!(&told, Some(Ok(Packet::Error { code, .. })) if &code[..] == b"SHUTDOWN"),
        "{told:?}"
    );
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("run returns")
        .unwrap();
    assert!(
        TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repos_config_needs_nothing_else_installed() {
    // The host with the built-in server on, on a free port, and no job_servers given: its
    // workers use the built-in server, and a job submitted to it is served.
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let repo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"),
    )
    .unwrap();
    let text = repo
        .replace("job_servers   = [\"127.0.0.1:4730\"]", "")
        .replace(
            "listen  = \"127.0.0.1:4730\"",
            &format!("listen  = \"127.0.0.1:{port}\""),
        )
        .replace("listen = \"127.0.0.1:47300\"", "listen = \"\"");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "the repo's config has a [server] listen line"
    );
    std::fs::write(&config, text).unwrap();
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_geardriver"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = ServerAddr::new("127.0.0.1", port);
    assert!(common::poll_until(LIMIT, || std::net::TcpStream::connect(
        ("127.0.0.1", port)
    )
    .is_ok()));
    let c = client(addr.clone());
    let outcome = tokio::time::timeout(LIMIT, c.run(JobRequest::new("reverse", "hello")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, JobOutcome::Complete(Bytes::from("olleh")));
    let submit = std::process::Command::new(env!("CARGO_BIN_EXE_geardriver"))
        .args(["submit", "--config"])
        .arg(&config)
        .args(["reverse", "from the cli"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&submit.stdout), "ilc eht morf");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(host.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server stopped with the host"
    );
}

// Issue 12, finding 9: a connection that never said anything, or a packet left half sent,
// held its descriptor for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_stalled_packets_are_closed() {
    let settings = Settings {
        silent_connection_timeout: Duration::from_millis(1000),
        stalled_packet_timeout: Duration::from_millis(1000),
        ..Settings::default()
    };
    let (addr, shutdown, _task) = embedded(settings).await;
    let closed_within = |mut stream: TcpStream, limit: Duration| async move {
        let mut buf = [0u8; 64];
        let started = std::time::Instant::now();
        loop {
            match tokio::time::timeout(limit, stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    };
    // Silent from the start.
    let silent = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .unwrap();
    assert!(
        closed_within(silent, Duration::from_secs(3))
            .await
            .is_some(),
        "the silent one was closed"
    );
    // Ten bytes of a twelve-byte header, then nothing.
    let mut stalled = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .unwrap();
    stalled.write_all(b"\0REQ\0\0\0\x09\0\0").await.unwrap();
    assert!(
        closed_within(stalled, Duration::from_secs(3))
            .await
            .is_some(),
        "the stalled one was closed"
    );
    // A sleeping worker is silent too, but it has spoken: it stays; so does a packet that
    // keeps arriving, however slowly (a byte every 100 ms: a tenth of the timeout, so a
    // loaded machine does not make it look stalled).
    let mut worker = raw(addr.port).await;
    worker
        .send(Packet::CanDo {
            function: Bytes::from("f"),
        })
        .await
        .unwrap();
    worker.send(Packet::PreSleep).await.unwrap();
    let mut slow = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .unwrap();
    let echo = b"\0REQ\0\0\0\x10\0\0\0\x05hello";
    for byte in echo {
        slow.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reply = [0u8; 17];
    tokio::time::timeout(LIMIT, slow.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"\0RES\0\0\0\x11\0\0\0\x05hello");
    worker
        .send(Packet::EchoReq {
            data: Bytes::from("still here"),
        })
        .await
        .unwrap();
    let Some(Ok(Packet::EchoRes { data })) = worker.next().await else {
        panic!("the sleeping worker was dropped")
    };
    assert_eq!(data, Bytes::from("still here"));
    shutdown.cancel();
}

// Issue 12, finding 9: a non-reading client's queue was bounded in packets (65,536), not
// bytes: 3 GB seen. Now it is dropped past a byte budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_past_a_byte_budget() {
    let settings = Settings {
        max_queued_bytes: 1024 * 1024,
        ..Settings::default()
    };
    let (addr, shutdown, _task) = embedded(settings).await;
    let mut reader = raw(addr.port).await;
    reader.send(foreground("flood")).await.unwrap();
    let Some(Ok(Packet::JobCreated { handle })) = reader.next().await else {
        panic!("not created")
    };
    let mut flooder = grabbing_worker(addr.port, "flood").await;
    // 300 chunks of 100 KB: 30 MB, far fewer packets than the packet cap.
    let chunk = Bytes::from(vec![b'd'; 100_000]);
    for _ in 0..300 {
        let sent = flooder
            .send(Packet::WorkData {
                handle: handle.clone(),
                data: chunk.clone(),
            })
            .await;
        if sent.is_err() {
            break;
        }
    }
    // The flooding worker is not the one dropped.
    flooder
        .send(Packet::EchoReq {
            data: Bytes::from("ok"),
        })
        .await
        .unwrap();
    let mut echoed = false;
    while let Ok(Some(Ok(packet))) = tokio::time::timeout(LIMIT, flooder.next()).await {
        if matches!(packet, Packet::EchoRes { .. }) {
            echoed = true;
            break;
        }
    }
    assert!(echoed, "the worker still served");
    let mut chunks = 0;
    loop {
        match tokio::time::timeout(LIMIT, reader.next()).await {
            Ok(Some(Ok(_))) => chunks += 1,
            Ok(None) | Ok(Some(Err(_))) => break,
            Err(_) => panic!("the non-reading client was never dropped ({chunks} chunks read)"),
        }
    }
    assert!(chunks < 300, "{chunks}");
    shutdown.cancel();
}

// A worker that can do many functions, when few have jobs, and one that can do few when many
// have jobs (the two ways GRAB_JOB looks for work, issue 16): both get the highest priority
// first, then the oldest, and nothing is handed out twice or lost — through gearmand too.
both_servers! {
    async fn grab_job_finds_the_best_job_whichever_way_it_looks(server) {
        let port = server.port;
        let mut client = raw(port).await;
        let submit = |function: &str, data: &str, priority: Priority| Packet::Submit {
            priority,
            background: true,
            function: Bytes::from(function.to_string()),
            unique: Bytes::new(),
            data: Bytes::from(data.to_string()),
        };
        // Jobs for 3 of 200 functions, and for 40 more the small worker cannot do.
        for (function, data, priority) in [
            ("f7", "f7-normal", Priority::Normal),
            ("f3", "f3-low", Priority::Low),
            ("f150", "f150-high", Priority::High),
            ("f7", "f7-high", Priority::High),
            ("f3", "f3-normal", Priority::Normal),
        ] {
            client.send(submit(function, data, priority)).await.unwrap();
            assert!(matches!(client.next().await, Some(Ok(Packet::JobCreated { .. }))));
        }
        for i in 0..40 {
            client.send(submit(&format!("other{i}"), "x", Priority::High)).await.unwrap();
            assert!(matches!(client.next().await, Some(Ok(Packet::JobCreated { .. }))));
        }
        // Many functions, few with jobs of its own.
        let mut many = raw(port).await;
        for i in 0..200 {
            many.send(Packet::CanDo { function: Bytes::from(format!("f{i}")) }).await.unwrap();
        }
        let mut got = Vec::new();
        while let Some(data) = grab_and_complete(&mut many).await {
            got.push(data);
        }
        assert_eq!(got, ["f150-high", "f7-high", "f7-normal", "f3-normal", "f3-low"]);
        // Few functions, many with jobs.
        let mut few = raw(port).await;
        for i in [39, 2] {
            few.send(Packet::CanDo { function: Bytes::from(format!("other{i}")) }).await.unwrap();
        }
        let mut got = Vec::new();
        while let Some(data) = grab_and_complete(&mut few).await {
            got.push(data);
        }
        assert_eq!(got, ["x", "x"]);
    }
}

/// GRAB_JOB; a job is completed at once and its data returned; `None` for NO_JOB.
async fn grab_and_complete(worker: &mut Framed<TcpStream, ClientCodec>) -> Option<String> {
    worker.send(Packet::GrabJob).await.unwrap();
    match worker.next().await {
        Some(Ok(Packet::JobAssign { handle, data, .. })) => {
            worker
                .send(Packet::WorkComplete {
                    handle,
                    data: Bytes::new(),
                })
                .await
                .unwrap();
            Some(String::from_utf8_lossy(&data).into_owned())
        }
        Some(Ok(Packet::NoJob)) => None,
        other => panic!("{other:?}"),
    }
}

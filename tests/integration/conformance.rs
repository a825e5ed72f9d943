//! Conformance of the built-in job server with gearmand: one scenario, run against each,
//! recording what the clients, workers and admin connections observe (packets, results,
//! statuses, admin rows); the two records must be the same. Job handles and connection
//! numbers are normalised (`H1`, `H2`… in order of appearance; `FD`), since they are
//! allowed to differ.
//!
//! Left out on purpose, because the built-in server differs from gearmand 1.1.20 there (see
//! `src/gearman/server/mod.rs`): where a dead worker's job is re-queued, CAN_DO_TIMEOUT,
//! epoch and reduce jobs. Cross-function order within a priority is unspecified and not used.

use crate::common;

use bytes::Bytes;
use common::{JobServer, ServerKind};
use futures_util::{SinkExt, StreamExt};
use geardriver::gearman::codec::ClientCodec;
use geardriver::gearman::packet::{Packet, Priority, Schedule};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Replaces job handles and fds with stable names.
#[derive(Default)]
struct Normalizer {
    handles: HashMap<Vec<u8>, usize>,
}

impl Normalizer {
    fn handle(&mut self, handle: &[u8]) -> String {
        if handle.is_empty() {
            return "H-".into();
        }
        let next = self.handles.len() + 1;
        format!("H{}", self.handles.entry(handle.to_vec()).or_insert(next))
    }

    /// Handles inside admin text (`H:host:N`).
    fn text(&mut self, text: &str) -> String {
        text.split_inclusive(['\t', '\n', ' '])
            .map(|piece| {
                let end = piece.trim_end_matches(['\t', '\n', ' ']);
                if end.starts_with("H:") && self.handles.contains_key(end.as_bytes()) {
                    format!("{}{}", self.handle(end.as_bytes()), &piece[end.len()..])
                } else {
                    piece.to_string()
                }
            })
            .collect()
    }

    fn packet(&mut self, packet: &Packet) -> String {
        let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        match packet {
            Packet::JobCreated { handle } => format!("JOB_CREATED {}", self.handle(handle)),
            Packet::JobAssign {
                handle,
                function,
                data,
            } => {
                format!(
                    "JOB_ASSIGN {} {} {}",
                    self.handle(handle),
                    s(function),
                    s(data)
                )
            }
            Packet::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            } => format!(
                "JOB_ASSIGN_UNIQ {} {} {:?} {}",
                self.handle(handle),
                s(function),
                s(unique),
                s(data)
            ),
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => {
                format!(
                    "WORK_STATUS {} {numerator}/{denominator}",
                    self.handle(handle)
                )
            }
            Packet::WorkData { handle, data } => {
                format!("WORK_DATA {} {}", self.handle(handle), s(data))
            }
            Packet::WorkWarning { handle, data } => {
                format!("WORK_WARNING {} {}", self.handle(handle), s(data))
            }
            Packet::WorkComplete { handle, data } => {
                format!("WORK_COMPLETE {} {}", self.handle(handle), s(data))
            }
            Packet::WorkFail { handle } => format!("WORK_FAIL {}", self.handle(handle)),
            Packet::WorkException { handle, data } => {
                format!("WORK_EXCEPTION {} {}", self.handle(handle), s(data))
            }
            Packet::StatusRes {
                handle,
                known,
                running,
                numerator,
                denominator,
            } => format!(
                "STATUS_RES {} known={known} running={running} {numerator}/{denominator}",
                if *known {
                    self.handle(handle)
                } else {
                    s(handle)
                }
            ),
            Packet::StatusResUnique {
                unique,
                known,
                running,
                numerator,
                denominator,
                waiting,
            } => format!(
                "STATUS_RES_UNIQUE {} known={known} running={running} {numerator}/{denominator} waiting={waiting}",
                s(unique)
            ),
            Packet::Error { code, text } => format!("ERROR {} {}", s(code), s(text)),
            other => format!("{other:?}"),
        }
    }
}

struct Peer {
    framed: Framed<TcpStream, ClientCodec>,
}

impl Peer {
    async fn connect(port: u16) -> Peer {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Peer {
            framed: Framed::new(stream, ClientCodec::default()),
        }
    }

    async fn send(&mut self, packet: Packet) {
        self.framed.send(packet).await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(5), self.framed.next())
            .await
            .expect("a packet within 5 s")
            .expect("connection open")
            .expect("a valid packet")
    }

    /// Whether nothing arrives for a short while.
    async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(300), self.framed.next())
            .await
            .is_err()
    }
}

struct Scenario {
    port: u16,
    norm: Normalizer,
    log: Vec<String>,
}

impl Scenario {
    fn note(&mut self, who: &str, what: String) {
        self.log.push(format!("{who}: {what}"));
    }

    async fn recv(&mut self, who: &str, peer: &mut Peer) -> Packet {
        let packet = peer.recv().await;
        let text = self.norm.packet(&packet);
        self.note(who, text);
        packet
    }

    async fn request(&mut self, who: &str, peer: &mut Peer, packet: Packet) -> Packet {
        peer.send(packet).await;
        self.recv(who, peer).await
    }

    /// An admin command on a fresh connection; rows sorted (order is the server's hash order
    /// in gearmand), fds replaced.
    async fn admin(&mut self, command: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an admin reply")
                .unwrap();
            assert!(n > 0, "admin connection closed");
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            let list = text.ends_with("\n.\n") || text == ".\n";
            let line = (text.starts_with("OK") || text.starts_with("ERR")) && text.ends_with('\n');
            if list || line {
                break;
            }
        }
        let text = self.norm.text(&String::from_utf8_lossy(&reply));
        let mut rows: Vec<String> = text
            .lines()
            .map(|row| {
                if command == "workers" && row != "." {
                    // "FD IP ID : functions"
                    let (_, rest) = row.split_once(' ').unwrap();
                    format!("FD {rest}")
                } else {
                    row.to_string()
                }
            })
            .collect();
        rows.sort();
        self.note(&format!("admin {command}"), format!("{rows:?}"));
    }
}

fn submit(
    function: &str,
    unique: &str,
    data: &str,
    priority: Priority,
    background: bool,
) -> Packet {
    Packet::Submit {
        priority,
        background,
        function: Bytes::from(function.to_string()),
        unique: Bytes::from(unique.to_string()),
        data: Bytes::from(data.to_string()),
    }
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

/// The scenario; returns what was observed.
async fn observe(server: &JobServer) -> Vec<String> {
    let mut sc = Scenario {
        port: server.port,
        norm: Normalizer::default(),
        log: Vec::new(),
    };
    let port = server.port;
    let mut client = Peer::connect(port).await;

    // Background jobs at every priority; coalescing by unique within a function only.
    for (function, unique, data, priority) in [
        ("f1", "", "normal", Priority::Normal),
        ("f1", "", "low", Priority::Low),
        ("f1", "", "high", Priority::High),
        ("f2", "u1", "first", Priority::Normal),
        ("f2", "u1", "second", Priority::Normal),
        ("f3", "u1", "other function", Priority::Normal),
    ] {
        sc.request(
            "client",
            &mut client,
            submit(function, unique, data, priority, true),
        )
        .await;
    }
    for command in ["status", "prioritystatus", "show jobs", "show unique jobs"] {
        sc.admin(command).await;
    }
    sc.request(
        "client",
        &mut client,
        Packet::GetStatusUnique { unique: b("u1") },
    )
    .await;
    sc.request(
        "client",
        &mut client,
        Packet::GetStatus {
            handle: b("H:nowhere:1"),
        },
    )
    .await;

    // A worker: abilities, client id, priorities within a function.
    let mut worker = Peer::connect(port).await;
    worker.send(Packet::SetClientId { id: b("worker-1") }).await;
    worker.send(Packet::CanDo { function: b("f1") }).await;
    worker.send(Packet::CanDo { function: b("f0") }).await;
    worker.send(Packet::CantDo { function: b("f0") }).await;
    sc.request("worker", &mut worker, Packet::EchoReq { data: b("sync") })
        .await;
    sc.admin("workers").await;
    for grab in [Packet::GrabJobUniq, Packet::GrabJob, Packet::GrabJobUniq] {
        if let Packet::JobAssign { handle, .. } | Packet::JobAssignUniq { handle, .. } =
            sc.request("worker", &mut worker, grab).await
        {
            sc.admin("status").await;
            worker
                .send(Packet::WorkComplete {
                    handle,
                    data: b("done"),
                })
                .await;
        }
    }
    sc.request("worker", &mut worker, Packet::GrabJob).await; // NO_JOB

    // Sleep and wake-up.
    worker.send(Packet::PreSleep).await;
    let quiet = worker.quiet().await;
    sc.note("worker", format!("quiet while nothing waits: {quiet}"));
    sc.request(
        "client",
        &mut client,
        submit("f1", "", "wake up", Priority::Normal, true),
    )
    .await;
    sc.recv("worker", &mut worker).await; // NOOP
    sc.request("worker", &mut worker, Packet::GrabJobUniq).await;
    // PRE_SLEEP with work waiting: NOOP at once.
    sc.request(
        "client",
        &mut client,
        submit("f1", "", "already there", Priority::Normal, true),
    )
    .await;
    worker.send(Packet::PreSleep).await;
    sc.recv("worker", &mut worker).await;

    // Foreground jobs: two clients coalesced, one with exceptions; progress relayed to both.
    let mut with_exceptions = Peer::connect(port).await;
    let mut plain = Peer::connect(port).await;
    sc.request(
        "exceptions",
        &mut with_exceptions,
        Packet::OptionReq {
            option: b("exceptions"),
        },
    )
    .await;
    sc.request(
        "exceptions",
        &mut with_exceptions,
        submit("fg", "shared", "payload", Priority::Normal, false),
    )
    .await;
    sc.request(
        "plain",
        &mut plain,
        submit("fg", "shared", "payload", Priority::Normal, false),
    )
    .await;
    let mut fg_worker = Peer::connect(port).await;
    fg_worker
        .send(Packet::CanDoTimeout {
            function: b("fg"),
            timeout_ms: 60_000,
        })
        .await;
    let Packet::JobAssignUniq { handle, .. } = sc
        .request("fg worker", &mut fg_worker, Packet::GrabJobUniq)
        .await
    else {
        panic!("no job for the fg worker")
    };
    fg_worker
        .send(Packet::WorkStatus {
            handle: handle.clone(),
            numerator: 1,
            denominator: 2,
        })
        .await;
    fg_worker
        .send(Packet::WorkData {
            handle: handle.clone(),
            data: b("chunk"),
        })
        .await;
    fg_worker
        .send(Packet::WorkWarning {
            handle: handle.clone(),
            data: b("careful"),
        })
        .await;
    for _ in 0..3 {
        sc.recv("exceptions", &mut with_exceptions).await;
        sc.recv("plain", &mut plain).await;
    }
    sc.request(
        "plain",
        &mut plain,
        Packet::GetStatus {
            handle: handle.clone(),
        },
    )
    .await;
    sc.request(
        "plain",
        &mut plain,
        Packet::GetStatusUnique {
            unique: b("shared"),
        },
    )
    .await;
    fg_worker
        .send(Packet::WorkException {
            handle: handle.clone(),
            data: b("it broke"),
        })
        .await;
    sc.recv("exceptions", &mut with_exceptions).await;
    sc.recv("plain", &mut plain).await;
    sc.request("plain", &mut plain, Packet::GetStatus { handle })
        .await;
    // A completed foreground job.
    sc.request(
        "plain",
        &mut plain,
        submit("fg", "", "again", Priority::High, false),
    )
    .await;
    let Packet::JobAssignUniq { handle, .. } = sc
        .request("fg worker", &mut fg_worker, Packet::GrabJobUniq)
        .await
    else {
        panic!("no second job")
    };
    fg_worker
        .send(Packet::WorkFail {
            handle: handle.clone(),
        })
        .await;
    sc.recv("plain", &mut plain).await;

    // Errors.
    sc.request("plain", &mut plain, Packet::EchoReq { data: b("") })
        .await;
    sc.request(
        "plain",
        &mut plain,
        Packet::OptionReq { option: b("bogus") },
    )
    .await;
    sc.request(
        "fg worker",
        &mut fg_worker,
        Packet::WorkComplete {
            handle: b("H:nowhere:2"),
            data: b(""),
        },
    )
    .await;
    sc.request(
        "fg worker",
        &mut fg_worker,
        Packet::WorkStatus {
            handle,
            numerator: 1,
            denominator: 1,
        },
    )
    .await;
    let sched = Packet::SubmitJobSched {
        function: b("f1"),
        unique: b(""),
        schedule: Box::new(Schedule::default()),
        data: b("x"),
    };
    sc.request("plain", &mut plain, sched).await;
    sc.request("fg worker", &mut fg_worker, Packet::AllYours)
        .await;

    // maxqueue (on a function that exists, where both servers apply it) and cancel job.
    sc.request(
        "client",
        &mut client,
        submit("limited", "", "1", Priority::Normal, true),
    )
    .await;
    sc.admin("maxqueue limited 1").await;
    sc.request(
        "client",
        &mut client,
        submit("limited", "", "2", Priority::Normal, true),
    )
    .await;
    sc.request(
        "client",
        &mut client,
        submit("limited", "", "3", Priority::High, true),
    )
    .await;
    sc.admin("maxqueue limited").await;
    let Packet::JobCreated { handle } = sc
        .request(
            "client",
            &mut client,
            submit("limited", "", "4", Priority::Normal, true),
        )
        .await
    else {
        panic!("submit refused after the limit was lifted")
    };
    sc.admin(&format!("cancel job {}", String::from_utf8_lossy(&handle)))
        .await;
    sc.admin("cancel job H:nowhere:3").await;
    for command in [
        "status",
        "show jobs",
        "bogus",
        "show bogus",
        "maxqueue",
        "cancel job",
        "STATUS",
    ] {
        sc.admin(command).await;
    }
    sc.log
}

/// Runs `scenario` against gearmand and the built-in server and asserts both records are
/// the same and contain each of `needles` (so they say what the protocol says, not just the
/// same thing twice).
async fn same_on_both<F, Fut>(scenario: F, needles: &[&str])
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let Some(gearmand) = JobServer::start(ServerKind::Gearmand) else {
        return;
    };
    let builtin = JobServer::start(ServerKind::Builtin).unwrap();
    let expected = scenario(gearmand.port).await;
    let actual = scenario(builtin.port).await;
    assert_eq!(
        expected.join("\n"),
        actual.join("\n"),
        "gearmand (left) and the built-in server (right) differ"
    );
    let joined = expected.join("\n");
    for needle in needles {
        assert!(joined.contains(needle), "{needle:?} in:\n{joined}");
    }
}

fn scenario(port: u16) -> Scenario {
    Scenario {
        port,
        norm: Normalizer::default(),
        log: Vec::new(),
    }
}

// Issue 11, defect 4: PHP's addTask loop, npm `gearman` and aiogear submit the same unique id
// several times on one connection and wait for a result per submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_unique_on_one_connection_answers_every_submission() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            let mut client = Peer::connect(port).await;
            for data in ["first", "second", "third"] {
                sc.request("client", &mut client, submit("dup", "same", data, Priority::Normal, false))
                    .await;
            }
            let mut background = Peer::connect(port).await;
            sc.request("background", &mut background, submit("dup", "same", "bg", Priority::Normal, true))
                .await;
            let mut worker = Peer::connect(port).await;
            worker.send(Packet::CanDo { function: b("dup") }).await;
            let Packet::JobAssignUniq { handle, .. } =
                sc.request("worker", &mut worker, Packet::GrabJobUniq).await
            else {
                panic!("no job")
            };
            worker.send(Packet::WorkData { handle: handle.clone(), data: b("part") }).await;
            worker.send(Packet::WorkComplete { handle, data: b("done") }).await;
            for _ in 0..6 {
                sc.recv("client", &mut client).await;
            }
            let quiet = client.quiet().await;
            sc.note("client", format!("nothing more: {quiet}"));
            sc.request("worker", &mut worker, Packet::GrabJobUniq).await;
            sc.log
        },
        &[
            "client: JOB_CREATED H1\nclient: JOB_CREATED H1\nclient: JOB_CREATED H1",
            "client: WORK_DATA H1 part\nclient: WORK_DATA H1 part\nclient: WORK_DATA H1 part",
            "client: WORK_COMPLETE H1 done\nclient: WORK_COMPLETE H1 done\nclient: WORK_COMPLETE H1 done",
            "client: nothing more: true",
            "worker: NoJob",
        ],
    )
    .await;
}

// Issue 11, defect 4 (a security defect): a connection reporting on a job it does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_packets_from_a_connection_not_holding_the_job_are_refused() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            let mut client = Peer::connect(port).await;
            let Packet::JobCreated { handle: queued } = sc
                .request(
                    "client",
                    &mut client,
                    submit("victim", "", "queued", Priority::Normal, true),
                )
                .await
            else {
                panic!("not created")
            };
            let Packet::JobCreated { handle: running } = sc
                .request(
                    "client",
                    &mut client,
                    submit("held", "", "running", Priority::Normal, false),
                )
                .await
            else {
                panic!("not created")
            };
            let mut owner = Peer::connect(port).await;
            owner
                .send(Packet::CanDo {
                    function: b("held"),
                })
                .await;
            sc.request("owner", &mut owner, Packet::GrabJobUniq).await;
            let mut stranger = Peer::connect(port).await;
            for handle in [&queued, &running] {
                for packet in [
                    Packet::WorkStatus {
                        handle: handle.clone(),
                        numerator: 1,
                        denominator: 2,
                    },
                    Packet::WorkData {
                        handle: handle.clone(),
                        data: b("forged"),
                    },
                    Packet::WorkWarning {
                        handle: handle.clone(),
                        data: b("forged"),
                    },
                    Packet::WorkException {
                        handle: handle.clone(),
                        data: b("forged"),
                    },
                    Packet::WorkFail {
                        handle: handle.clone(),
                    },
                    Packet::WorkComplete {
                        handle: handle.clone(),
                        data: b("forged"),
                    },
                ] {
                    sc.request("stranger", &mut stranger, packet).await;
                }
            }
            sc.request(
                "stranger",
                &mut stranger,
                Packet::EchoReq {
                    data: b("still open"),
                },
            )
            .await;
            let quiet = client.quiet().await;
            sc.note("client", format!("told nothing forged: {quiet}"));
            sc.admin("status").await;
            owner
                .send(Packet::WorkComplete {
                    handle: running,
                    data: b("genuine"),
                })
                .await;
            sc.recv("client", &mut client).await;
            sc.log
        },
        &[
            "stranger: ERROR JOB_NOT_FOUND Job given in work result not found",
            "stranger: ERROR JOB_NOT_FOUND Job does not exist on server",
            "stranger: ERROR JOB_NOT_FOUND An exception was received for a job that does not exist",
            "stranger: EchoRes",
            "client: told nothing forged: true",
            "victim\\t1\\t0\\t0",
            "client: WORK_COMPLETE H2 genuine",
        ],
    )
    .await;
}

// Issue 11, defect 4: npm's `gearman` sends CAN_DO_TIMEOUT's timeout as a 4-byte binary
// integer; gearmand reads it with strtol (so: no timeout) and keeps the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_do_timeout_with_a_binary_timeout_is_accepted() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            let mut worker = Peer::connect(port).await;
            let mut raw = b"\0REQ\0\0\0\x17\0\0\0\x08npm\0".to_vec();
            raw.extend_from_slice(&2000u32.to_be_bytes());
            worker.framed.get_mut().write_all(&raw).await.unwrap();
            sc.request("worker", &mut worker, Packet::EchoReq { data: b("alive") })
                .await;
            sc.admin("status").await;
            let mut client = Peer::connect(port).await;
            sc.request(
                "client",
                &mut client,
                submit("npm", "", "x", Priority::Normal, false),
            )
            .await;
            sc.request("worker", &mut worker, Packet::GrabJob).await;
            sc.log
        },
        &[
            "worker: EchoRes",
            "npm\\t0\\t0\\t1",
            "worker: JOB_ASSIGN H1 npm x",
        ],
    )
    .await;
}

// Issue 11, defect 4: uniques over 64 bytes are refused as by gearmand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_over_64_bytes_is_refused() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            let mut client = Peer::connect(port).await;
            for len in [64, 65, 1000] {
                let unique = "u".repeat(len);
                sc.request(
                    &format!("client, unique of {len}"),
                    &mut client,
                    submit("long", &unique, "x", Priority::Normal, true),
                )
                .await;
            }
            sc.log
        },
        &[
            "client, unique of 64: JOB_CREATED H1",
            "client, unique of 65: ERROR ARGUMENT_TOO_LARGE Unique value too large",
            "client, unique of 1000: ERROR ARGUMENT_TOO_LARGE Unique value too large",
        ],
    )
    .await;
}

// Issue 11, defect 4: a foreground job whose every client left before a worker took it is
// never run (its clients cannot get the result).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_job_abandoned_by_its_clients_is_not_run() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            {
                let mut client = Peer::connect(port).await;
                sc.request(
                    "leaving client",
                    &mut client,
                    submit("lonely", "", "unwanted", Priority::Normal, false),
                )
                .await;
                let mut other = Peer::connect(port).await;
                sc.request(
                    "other client",
                    &mut other,
                    submit("lonely", "", "wanted", Priority::Normal, false),
                )
                .await;
                drop(client);
                let mut worker = Peer::connect(port).await;
                worker
                    .send(Packet::CanDo {
                        function: b("lonely"),
                    })
                    .await;
                // Let the server see the disconnect first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Packet::JobAssignUniq { handle, .. } =
                    sc.request("worker", &mut worker, Packet::GrabJobUniq).await
                else {
                    panic!("the wanted job was not handed out")
                };
                worker
                    .send(Packet::WorkComplete {
                        handle,
                        data: b("ok"),
                    })
                    .await;
                sc.recv("other client", &mut other).await;
                sc.request("worker", &mut worker, Packet::GrabJobUniq).await;
            }
            sc.log
        },
        &[
            "worker: JOB_ASSIGN_UNIQ H2 lonely \"\" wanted",
            "other client: WORK_COMPLETE H2 ok",
            "worker: NoJob",
        ],
    )
    .await;
}

// Issue 11, defect 4: gearadmin's --server-verbose, --create-function and --drop-function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_verbose_create_and_drop_function_answer_as_gearmand() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            let mut worker = Peer::connect(port).await;
            worker.send(Packet::CanDo { function: b("busy") }).await;
            sc.request("worker", &mut worker, Packet::EchoReq { data: b("sync") }).await;
            for command in [
                "verbose",
                "create function made",
                "create function made",
                "status",
                "drop function made",
                "drop function made",
                "drop function busy",
                "create function",
                "drop",
                "status",
            ] {
                sc.admin(command).await;
            }
            sc.log
        },
        &[
            "admin verbose: [\"OK ERROR\"]",
            "admin create function made: [\"OK\"]",
            "\"made\\t0\\t0\\t0\"",
            "admin drop function made: [\"ERR function not found\"]",
            "admin drop function busy: [\"ERR there are still connected workers or executing clients\"]",
            "admin create function: [\"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\"]",
        ],
    )
    .await;
}

// Issue 11, defect 4: `maxqueue` on a function with no jobs yet is ignored by gearmand; ours
// refused the second job and then listed the function as empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxqueue_on_a_function_not_seen_yet_is_ignored() {
    same_on_both(
        |port| async move {
            let mut sc = scenario(port);
            sc.admin("maxqueue fresh 1").await;
            sc.admin("status").await;
            let mut client = Peer::connect(port).await;
            for data in ["1", "2"] {
                sc.request(
                    "client",
                    &mut client,
                    submit("fresh", "", data, Priority::Normal, true),
                )
                .await;
            }
            sc.admin("status").await;
            sc.log
        },
        &[
            "client: JOB_CREATED H1\nclient: JOB_CREATED H2",
            "fresh\\t2\\t0\\t0",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_server_behaves_like_gearmand() {
    let Some(gearmand) = JobServer::start(ServerKind::Gearmand) else {
        return;
    };
    let builtin = JobServer::start(ServerKind::Builtin).unwrap();
    let expected = observe(&gearmand).await;
    let actual = observe(&builtin).await;
    let differences: Vec<String> = expected
        .iter()
        .zip(&actual)
        .enumerate()
        .filter(|(_, (e, a))| e != a)
        .map(|(i, (e, a))| format!("step {i}:\n  gearmand: {e}\n  built-in: {a}"))
        .collect();
    assert!(
        differences.is_empty() && expected.len() == actual.len(),
        "{} differences ({} vs {} observations):\n{}\n\nfull gearmand record:\n{}",
        differences.len(),
        expected.len(),
        actual.len(),
        differences.join("\n"),
        expected.join("\n")
    );
    // And the record says what the protocol says, not just the same thing twice.
    let joined = expected.join("\n");
    for needle in [
        "worker: JOB_ASSIGN_UNIQ H3 f1 \"\" high",
        "worker: JOB_ASSIGN H1 f1 normal",
        "worker: JOB_ASSIGN_UNIQ H2 f1 \"\" low",
        "client: JOB_CREATED H4\nclient: JOB_CREATED H4\nclient: JOB_CREATED H5",
        "exceptions: WORK_EXCEPTION H",
        "plain: WORK_FAIL H",
        "ERROR JOB_NOT_FOUND Job given in work result not found",
        "ERROR QUEUE_ERROR Job queue is full",
        "ERROR UNKNOWN_OPTION Server does not recognize given option",
        "worker: quiet while nothing waits: true",
    ] {
        assert!(joined.contains(needle), "{needle:?} in:\n{joined}");
    }
}

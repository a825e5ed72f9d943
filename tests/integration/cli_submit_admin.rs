//! `geardriver submit` and `geardriver admin` as a user runs them, against a real gearmand.

use crate::common;

use bytes::Bytes;
use common::{geardriver, handler, start_worker, wait_for_status};
use geardriver::gearman::JobFailure;
use std::io::Write;
use std::process::{Output, Stdio};

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = geardriver()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run geardriver");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

both_servers! {
    async fn submit_prints_results_and_reports_failures(gearmand) {
        let server = gearmand.addr().to_string();
        let worker = start_worker(
            vec![gearmand.addr()],
            &["upper", "fail"],
            handler(|job, updates| async move {
                if &job.function[..] == b"fail" {
                    return Err(JobFailure::Message(Bytes::from(format!(
                        "fail: {}",
                        String::from_utf8_lossy(&job.data)
                    ))));
                }
                updates.warning("almost there");
                Ok(Bytes::from(
                    String::from_utf8_lossy(&job.data).to_uppercase(),
                ))
            }),
        );

        let out = tokio::task::spawn_blocking({
            let server = server.clone();
            move || run(&["submit", "--server", &server, "upper", "hello"], None)
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), "HELLO", "exact bytes on a pipe");
        assert!(
            text(&out.stderr).contains("warning: almost there"),
            "{}",
            text(&out.stderr)
        );

        // The workload comes from stdin when DATA is absent, byte for byte.
        let out = tokio::task::spawn_blocking({
            let server = server.clone();
            move || {
                run(
                    &["submit", "--server", &server, "--priority", "high", "upper"],
                    Some(b"from stdin\n"),
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(text(&out.stdout), "FROM STDIN\n");

        let out = tokio::task::spawn_blocking({
            let server = server.clone();
            move || run(&["submit", "--server", &server, "fail", "boom"], None)
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty());
        assert!(
            text(&out.stderr).contains("job fail failed: fail: boom"),
            "{}",
            text(&out.stderr)
        );
        worker.stop().await;

        // Background: the handle is printed and the job waits in the queue.
        let out = tokio::task::spawn_blocking({
            let server = server.clone();
            move || {
                run(
                    &[
                        "submit",
                        "--server",
                        &server,
                        "--background",
                        "--unique",
                        "u1",
                        "later",
                        "x",
                    ],
                    None,
                )
            }
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(text(&out.stdout).starts_with("H:"), "{}", text(&out.stdout));
        assert!(wait_for_status(&gearmand.addr(), "later", |s| s.total == 1).await);
    }
}

#[test]
fn submit_to_an_unreachable_server_fails_clearly() {
    let port = common::free_port().to_string();
    let server = format!("127.0.0.1:{port}");
    let out = run(&["submit", "--server", &server, "f", "x"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to job server {server}")),
        "{stderr}"
    );
    let out = run(&["admin", "--server", &server, "status"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_arguments_exit_2() {
    let out = run(&["submit", "--priority", "urgent", "f", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("urgent"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["submit", "--server", "host:0", "f", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("port"), "{}", text(&out.stderr));
    let out = run(&["admin", "frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("frobnicate"),
        "{}",
        text(&out.stderr)
    );
}

both_servers! {
    async fn admin_prints_what_gearmand_answers(gearmand) {
        let server = gearmand.addr().to_string();
        let pid = gearmand.pid();
        tokio::task::spawn_blocking(move || {
            run(
                &["submit", "--server", &server, "--background", "queued", "x"],
                None,
            );
            let out = run(&["admin", "--server", &server, "status"], None);
            assert!(out.status.success(), "{out:?}");
            assert_eq!(text(&out.stdout), "queued\t1\t0\t0\n.\n");
            let out = run(&["admin", "--server", &server, "getpid"], None);
            assert_eq!(text(&out.stdout), format!("{pid}\n"));
            let out = run(&["admin", "--server", &server, "show", "jobs"], None);
            assert!(
                text(&out.stdout).ends_with("\t0\t0\t1\n.\n"),
                "{}",
                text(&out.stdout)
            );
            let out = run(
                &["admin", "--server", &server, "cancel", "job", "H:nope:1"],
                None,
            );
            assert_eq!(out.status.code(), Some(1));
            assert!(
                text(&out.stderr).contains("UNKNOWN_JOB"),
                "{}",
                text(&out.stderr)
            );
        })
        .await
        .unwrap();
    }
}

both_servers! {
    async fn without_server_the_configs_first_job_server_is_used(gearmand) {
        let worker = start_worker(
            vec![gearmand.addr()],
            &["upper"],
            handler(|job, _| async move {
                Ok(Bytes::from(
                    String::from_utf8_lossy(&job.data).to_uppercase(),
                ))
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "[driver]\njob_servers = [\"{}\", \"127.0.0.1:1\"]\n",
                gearmand.addr()
            ),
        )
        .unwrap();
        let path = config.to_string_lossy().into_owned();
        let out = tokio::task::spawn_blocking(move || {
            (
                run(&["submit", "--config", &path, "upper", "via config"], None),
                run(&["admin", "--config", &path, "status"], None),
            )
        })
        .await
        .unwrap();
        assert!(out.0.status.success(), "{:?}", out.0);
        assert_eq!(text(&out.0.stdout), "VIA CONFIG");
        assert!(
            text(&out.1.stdout).contains("upper\t0\t0\t1"),
            "{}",
            text(&out.1.stdout)
        );
        worker.stop().await;
        // A broken config is an error, not a silent fallback.
        std::fs::write(&config, "[driver]\nbogus = 1\n").unwrap();
        let path = config.to_string_lossy().into_owned();
        let out = run(&["submit", "--config", &path, "upper", "x"], None);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains("bogus"), "{}", text(&out.stderr));
    }
}

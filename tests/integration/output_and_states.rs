//! Issue 18, item 7: a process's recent output, read with the console's `output PID [LINES]`
//! and `GET /api/processes/PID/output`, bounded, kept after a crash; and the one-letter
//! scoreboard state a job sets for what it does (a plugin's `set_state`, a program's
//! `state C` status line), shown while the job runs and gone after.

use crate::common;

use bytes::Bytes;
use common::console::Console;
use common::host::Host;
use common::http::get;
use common::{free_port, poll_until};
use geardriver::gearman::{Client, ClientOptions, JobOutcome, JobRequest};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

/// A command job that writes `line 1` … `line N` (N is its payload) to stderr, returns `ok`.
const TALK: &str = r#"[[jobs]]
name = "talk"
command = ["sh", "-c", 'n=$(cat); i=1; while [ $i -le $n ]; do echo "line $i" >&2; i=$((i+1)); done; echo ok']
"#;

/// A host with a console and the HTTP endpoint, `driver` settings and `jobs`; waits until
/// both answer. Returns the host, the console's port and the HTTP port.
fn start(servers: &[String], driver: &str, jobs: &str) -> (Host, u16, u16) {
    let (console, http) = (free_port(), free_port());
    let host = Host::start(
        servers,
        &format!("interval = 0\nrestart_delay = 0.05\n{driver}"),
        &format!(
            "[console]\nlisten = \"127.0.0.1:{console}\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n{jobs}"
        ),
    );
    for port in [console, http] {
        host.wait_listening(port, LIMIT);
    }
    (host, console, http)
}

/// The output lines of an `output` reply (after its header) as (stream, text).
fn output_lines(reply: &[String]) -> Vec<(String, String)> {
    reply[1..]
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(3, "  ").collect();
            assert_eq!(fields.len(), 3, "TIME  STREAM  text: {line:?}");
            assert_eq!(fields[0].len(), "1970-01-01T00:00:00".len(), "{line:?}");
            (fields[1].to_string(), fields[2].to_string())
        })
        .collect()
}

fn stderr_lines(range: std::ops::RangeInclusive<u32>) -> Vec<(String, String)> {
    range
        .map(|i| ("STDERR".to_string(), format!("line {i}")))
        .collect()
}

both_servers! {
    async fn a_processs_recent_output_is_read_from_the_console_and_http_and_is_bounded(server) {
        let (host, console_port, http) =
            start(&[server.addr().to_string()], "output_buffer = 5", TALK);
        let pid = host.wait_workers("talk", 1, LIMIT)[0];
        let client = Client::new(vec![server.addr()], ClientOptions::default()).unwrap();
        let run = |n: &'static str| client.run(JobRequest::new("talk", n));
        assert_eq!(run("3").await.unwrap(), JobOutcome::Complete(Bytes::from("ok\n")));
        let mut console = Console::connect(console_port);
        let output = format!("output {pid}");
        let mut shown = Vec::new();
        // The host reads the lines as they come, maybe after the job's result.
        assert!(
            poll_until(LIMIT, || {
                shown = console.lines(&output);
                shown.len() == 4
            }),
            "{shown:?}\n{}",
            host.log()
        );
        assert!(
            shown[0].starts_with(&format!("{pid}  talk  running since 20")),
            "{shown:?}"
        );
        assert_eq!(output_lines(&shown), stderr_lines(1..=3));

        // More lines than it keeps: the last 5, and the header says how many went.
        assert_eq!(run("20").await.unwrap(), JobOutcome::Complete(Bytes::from("ok\n")));
        assert!(
            poll_until(LIMIT, || {
                shown = console.lines(&output);
                shown.last().is_some_and(|l| l.ends_with("  line 20"))
            }),
            "{shown:?}"
        );
        assert_eq!(output_lines(&shown), stderr_lines(16..=20));
        assert!(shown[0].ends_with(" (18 earlier lines not kept)"), "{shown:?}");
        assert_eq!(
            output_lines(&console.lines(&format!("output {pid} 2"))),
            stderr_lines(19..=20)
        );
        // Asking for more than is kept gets what is kept.
        assert_eq!(console.lines(&format!("output {pid} 500")).len(), 6);

        // The same as JSON.
        let reply = get(http, &format!("/api/processes/{pid}/output?lines=2"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        assert_eq!(json["pid"], pid);
        assert_eq!(json["pool"], "talk");
        assert_eq!(json["exited_ms"], serde_json::Value::Null);
        assert_eq!(json["exit_status"], serde_json::Value::Null);
        assert_eq!(json["exit_code"], serde_json::Value::Null);
        assert_eq!(json["dropped"], 18);
        let lines = json["lines"].as_array().unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["line 19", "line 20"]);
        assert!(lines.iter().all(|l| l["stream"] == "stderr" && l["cut"] == false));
        assert!(lines[0]["time_ms"].as_i64().unwrap() >= json["started_ms"].as_i64().unwrap());
        let all = get(http, &format!("/api/processes/{pid}/output")).json();
        assert_eq!(all["lines"].as_array().unwrap().len(), 5);

        // Bad input: clear errors, on the console and over HTTP.
        let cases = [
            ("output".to_string(), "give a PID: output PID [LINES]"),
            ("output abc".to_string(), "PID must be a process id, not \"abc\""),
            (
                "output 1".to_string(),
                "no output is kept for 1: it is not one of our processes, or it exited too long ago",
            ),
            (format!("output {pid} 0"), "LINES must be a whole number >= 1, not \"0\""),
            (format!("output {pid} -2"), "LINES must be a whole number >= 1, not \"-2\""),
            (format!("output {pid} many"), "LINES must be a whole number >= 1, not \"many\""),
        ];
        for (command, text) in cases {
            assert_eq!(
                console.cmd(&command),
                format!("ERR invalid_value: {text}\r\n.\r\n"),
                "{command}"
            );
        }
        for (path, status, message) in [
            ("/api/processes/abc/output".to_string(), 400, "PID must be a process id, not \"abc\""),
            (
                "/api/processes/1/output".to_string(),
                404,
                "no output is kept for 1: it is not one of our processes, or it exited too long ago",
            ),
            (
                format!("/api/processes/{pid}/output?lines=x"),
                400,
                "LINES must be a whole number >= 1, not \"x\"",
            ),
            (
                format!("/api/processes/{pid}/output?line=2"),
                400,
                "unknown query parameter \"line\" (there is only lines)",
            ),
        ] {
            let reply = get(http, &path);
            assert_eq!(reply.status, status, "{path}: {}", reply.body);
            assert_eq!(
                reply.json(),
                serde_json::json!({"error": "invalid_value", "message": message}),
                "{path}"
            );
        }
        // The console goes on serving.
        assert_eq!(console.lines(&output).len(), 6);
    }
}

/// A program whose first run writes to stdout and stderr and crashes (exit 3); the ones
/// after it write and stay.
#[test]
fn a_crashed_processs_last_lines_stay_readable() {
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("crashed");
    let job = format!(
        r#"[[jobs]]
name = "crashy"
program = ["sh", "-c", 'echo "hello from $$"; if [ -e {mark} ]; then exec sleep 1000; fi; touch {mark}; echo "about to fail" >&2; echo "dying now" >&2; exit 3']
"#,
        mark = mark.display()
    );
    // Nobody connects to the job server: the program speaks no Gearman.
    let servers = [format!("127.0.0.1:{}", free_port())];
    let (host, console_port, http) = start(&servers, "", &job);
    host.wait_log("[crashy] Exited with status 3", LIMIT);
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("[crashy] Exited with status 3"))
        .unwrap();
    let crashed: u32 = line[line.find('(').unwrap() + 1..line.find(')').unwrap()]
        .parse()
        .unwrap();
    let replacement = host.wait_workers("crashy", 1, LIMIT)[0];
    assert_ne!(replacement, crashed);

    let mut console = Console::connect(console_port);
    let shown = console.lines(&format!("output {crashed}"));
    assert!(
        shown[0].starts_with(&format!("{crashed}  crashy  exited 20"))
            && shown[0].ends_with(" with status 3"),
        "{shown:?}"
    );
    let lines = output_lines(&shown);
    // stdout and stderr are separate pipes: each in order, not with each other.
    let of = |stream: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, t)| t.clone())
            .collect()
    };
    assert_eq!(of("STDERR"), ["about to fail", "dying now"], "{shown:?}");
    assert_eq!(of("STDOUT").len(), 1, "{shown:?}");
    assert!(of("STDOUT")[0].starts_with("hello from "), "{shown:?}");
    assert_eq!(lines.len(), 3, "{shown:?}");

    let json = get(http, &format!("/api/processes/{crashed}/output")).json();
    assert_eq!(json["exit_status"], "3");
    assert_eq!(json["exit_code"], 3);
    assert!(json["exited_ms"].as_i64().unwrap() >= json["started_ms"].as_i64().unwrap());
    assert_eq!(json["lines"].as_array().unwrap().len(), 3);

    // The replacement's own output, which is still running.
    let mut now = Vec::new();
    assert!(poll_until(LIMIT, || {
        now = console.lines(&format!("output {replacement}"));
        now.len() == 2
    }));
    assert!(now[0].contains("  crashy  running since "), "{now:?}");
    assert_eq!(output_lines(&now)[0].0, "STDOUT");
}

#[test]
fn output_buffer_is_checked_and_0_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[driver]\noutput_buffer = 5000\n[[jobs]]\nname = \"a\"\nworker = \"echo\"\n",
    )
    .unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "geardriver: {}: driver.output_buffer = 5000 is more than the 1000 lines of recent output a process may keep (0 turns it off)",
            config.display()
        )
    );
    std::fs::write(&config, "[driver]\noutput_buffer = -1\n").unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("driver.output_buffer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Off: nothing is kept, and the console says why.
    let servers = [format!("127.0.0.1:{}", free_port())];
    let job =
        "[[jobs]]\nname = \"chatty\"\nprogram = [\"sh\", \"-c\", \"echo hi; exec sleep 1000\"]\n";
    let (host, console_port, http) = start(&servers, "output_buffer = 0", job);
    let pid = host.wait_workers("chatty", 1, LIMIT)[0];
    host.wait_log("STDOUT: hi", LIMIT);
    let mut console = Console::connect(console_port);
    assert_eq!(
        console.cmd(&format!("output {pid}")),
        "ERR invalid_value: no output is kept: [driver] output_buffer is 0\r\n.\r\n"
    );
    let reply = get(http, &format!("/api/processes/{pid}/output"));
    assert_eq!(reply.status, 404);
}

/// The scoreboard's letter for `pid`, if it has a row.
fn letter(console: &mut Console, pid: u32) -> Option<String> {
    console.lines("scoreboard").iter().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[0] == pid.to_string()).then(|| f[2].to_string())
    })
}

both_servers! {
    async fn a_plugins_custom_state_shows_in_the_scoreboard_while_its_job_runs(server) {
        let (host, console_port, http) = start(
            &[server.addr().to_string()],
            "",
            "[[jobs]]\nname = \"st\"\nworker = \"state\"\n",
        );
        let pid = host.wait_workers("st", 1, LIMIT)[0];
        let mut console = Console::connect(console_port);
        assert!(poll_until(LIMIT, || letter(&mut console, pid).as_deref() == Some("_")));
        let client = Client::new(vec![server.addr()], ClientOptions::default()).unwrap();
        let addr = server.addr();
        let job = tokio::spawn(async move {
            let client = Client::new(vec![addr], ClientOptions::default()).unwrap();
            client.run(JobRequest::new("st", "C 3000")).await
        });
        let mut board = Vec::new();
        assert!(
            poll_until(LIMIT, || {
                board = console.lines("scoreboard");
                letter(&mut console, pid).as_deref() == Some("C")
            }),
            "{board:?}\n{}",
            host.log()
        );
        // The same in `show … extended` and the API, with the state it stands for.
        let show = console.lines("show st extended");
        assert!(show[1].contains("  busy (C) st "), "{show:?}");
        let processes = get(http, "/api/processes").json();
        let row = processes
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap()
            .clone();
        assert_eq!((&row["state"], &row["custom_state"]), (&"busy".into(), &"C".into()));

        assert_eq!(
            job.await.unwrap().unwrap(),
            JobOutcome::Complete(Bytes::from("state C"))
        );
        // The job's end resets it.
        assert!(
            poll_until(LIMIT, || letter(&mut console, pid).as_deref() == Some("_")),
            "{:?}",
            console.lines("scoreboard")
        );
        let processes = get(http, "/api/processes").json();
        assert!(processes[0]["custom_state"].is_null(), "{processes}");

        // A letter the scoreboard uses itself, or no printable one, is refused to the plugin
        // (and this plugin fails its job with the reason).
        for (payload, reason) in [
            (
                "B 10",
                "'B' is one of the scoreboard's own letters (_ idle, B busy, S starting, T stopping, . free); pick another",
            ),
            (
                "  10",
                "a custom state is one printable ASCII character other than space, not ' '",
            ),
        ] {
            assert_eq!(
                client.run(JobRequest::new("st", payload)).await.unwrap(),
                JobOutcome::failed_with(format!("state: {reason}")),
                "{payload}"
            );
        }
        assert_eq!(letter(&mut console, pid).as_deref(), Some("_"));
    }
}

/// A program says what its job does with `state C` on its status descriptor.
#[test]
fn a_programs_state_line_shows_in_the_scoreboard_until_its_job_is_done() {
    let marks = tempfile::tempdir().unwrap();
    let go = marks.path().join("go");
    let job = format!(
        r#"[[jobs]]
name = "told"
program = ["bash", "-c", 'fd=$GEARDRIVER_STATUS_FD; echo idle >&$fd; echo busy >&$fd; echo "state BB" >&$fd; echo "state Q" >&$fd; while [ ! -e {go} ]; do sleep 0.05; done; echo done >&$fd; exec sleep 1000']
"#,
        go = go.display()
    );
    let servers = [format!("127.0.0.1:{}", free_port())];
    let (host, console_port, _) = start(&servers, "", &job);
    let pid = host.wait_workers("told", 1, LIMIT)[0];
    let mut console = Console::connect(console_port);
    assert!(
        poll_until(LIMIT, || letter(&mut console, pid).as_deref() == Some("Q")),
        "{:?}\n{}",
        console.lines("scoreboard"),
        host.log()
    );
    // The bad line was said once, with the reason.
    host.wait_log("ignoring \"state BB\": a state is one character", LIMIT);
    std::fs::write(&go, "").unwrap();
    assert!(
        poll_until(LIMIT, || letter(&mut console, pid).as_deref() == Some("_")),
        "{:?}",
        console.lines("scoreboard")
    );
}

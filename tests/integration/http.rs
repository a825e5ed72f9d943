//! The HTTP endpoint against a running host: `/metrics` checked by Prometheus' own
//! `promtool` and against what a foreign client ran, the JSON API's figures and changes
//! checked through /proc, the secret, and the status page in a real browser (headless
//! Chromium) following a change of process count without a reload.

use crate::common;

use common::host::Host;
use common::http::{get, post, request, tool};
use common::{ChildGuard, free_port, poll_until};
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(15);

const JOBS: &str = "[[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nmin_processes = 2\nmax_processes = 5\n\
                    [[jobs]]\nname = \"failing\"\nworker = \"fail\"\nmin_processes = 1\nmax_processes = 1\n";

/// A host running its built-in job server (its workers use it) and the HTTP endpoint, with
/// `extra` config; waits until both answer. Returns the host, the HTTP port and the job
/// server's port.
fn host_with_http(extra: &str) -> (Host, u16, u16) {
    let http = free_port();
    let server = free_port();
    let host = Host::start(
        &[format!("127.0.0.1:{server}")],
        "interval = 1\nrestart_delay = 0.05",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [server]\nenabled = true\nlisten = \"127.0.0.1:{server}\"\n{extra}\n{JOBS}"
        ),
    );
    for port in [http, server] {
        host.wait_listening(port, LIMIT);
    }
    (host, http, server)
}

/// The value of the sample `series` (name and labels exactly as written) on a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `function` with `payload` through the `gearman` CLI (a client nobody here wrote).
fn run_with_cli(port: u16, function: &str, payload: &str) -> Option<String> {
    let out = common::gearman_cli()?
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-f",
            function,
            payload,
        ])
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn metrics_pass_promtool_and_count_what_ran() {
    let (host, http, server) = host_with_http("");
    let reverse = host.wait_workers("reverse", 2, LIMIT);
    host.wait_workers("failing", 1, LIMIT);
    for word in ["abc", "de", "f"] {
        let Some(out) = run_with_cli(server, "reverse", word) else {
            return;
        };
        assert_eq!(out, word.chars().rev().collect::<String>());
    }
    for _ in 0..2 {
        run_with_cli(server, "failing", "boom");
    }
    let page = get(http, "/metrics");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        page.headers
    );
    let text = page.body;
    if let Some(promtool) = tool("promtool", "prometheus") {
        let mut check = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}\n--- page ---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    };
    expect(r#"geardriver_jobs_done_total{pool="reverse"}"#, 3.0);
    expect(r#"geardriver_jobs_failed_total{pool="failing"}"#, 2.0);
    expect(r#"geardriver_jobs_done_total{pool="failing"}"#, 0.0);
    expect(
        r#"geardriver_job_duration_seconds_count{pool="reverse"}"#,
        3.0,
    );
    expect(
        r#"geardriver_job_duration_seconds_bucket{pool="reverse",le="+Inf"}"#,
        3.0,
    );
    expect(r#"geardriver_processes{pool="reverse",state="idle"}"#, 2.0);
    expect(r#"geardriver_min_processes{pool="reverse"}"#, 2.0);
    expect(r#"geardriver_max_processes{pool="reverse"}"#, 5.0);
    expect(r#"geardriver_pool_failed{pool="reverse"}"#, 0.0);
    expect(r#"geardriver_restarts_total{pool="reverse"}"#, 0.0);
    expect(
        r#"geardriver_server_completed_jobs_total{function="reverse"}"#,
        3.0,
    );
    expect(
        r#"geardriver_server_submitted_jobs_total{function="reverse"}"#,
        3.0,
    );
    expect(
        r#"geardriver_server_failed_jobs_total{function="failing"}"#,
        2.0,
    );
    expect(r#"geardriver_server_workers{function="reverse"}"#, 2.0);
    expect(
        r#"geardriver_server_queued_jobs{function="reverse",priority="normal"}"#,
        0.0,
    );
    // Memory is sampled once a second.
    let mut rss = 0.0;
    assert!(
        poll_until(LIMIT, || {
            rss = sample(
                &get(http, "/metrics").body,
                r#"geardriver_resident_memory_bytes{pool="reverse"}"#,
            )
            .unwrap_or(0.0);
            rss > 1_000_000.0
        }),
        "two processes' RSS: {rss}"
    );
    let lastrun = sample(
        &text,
        r#"geardriver_job_last_run_timestamp_seconds{function="reverse",pool="reverse"}"#,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - lastrun).abs() < 60.0, "lastrun {lastrun}, now {now}");

    // A process killed from outside is a restart, and what it did is still counted.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(reverse[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut text = String::new();
    assert!(
        poll_until(LIMIT, || {
            text = get(http, "/metrics").body;
            sample(&text, r#"geardriver_restarts_total{pool="reverse"}"#) == Some(1.0)
        }),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"geardriver_jobs_done_total{pool="reverse"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"geardriver_job_duration_seconds_count{pool="reverse"}"#
        ),
        Some(3.0)
    );
    // An operator's killall replaces the processes: not restarts (found by a trial: every
    // killed process counted as one).
    let before = host.wait_workers("reverse", 2, LIMIT);
    assert_eq!(
        post(http, "/api/killall", r#"{"jobs": ["reverse"]}"#).status,
        200
    );
    assert!(poll_until(LIMIT, || {
        let now = host.workers("reverse");
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    }));
    let text = get(http, "/metrics").body;
    assert_eq!(
        sample(&text, r#"geardriver_restarts_total{pool="reverse"}"#),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn the_api_reports_and_changes_the_host() {
    let (host, http, _) = host_with_http("");
    let reverse = host.wait_workers("reverse", 2, LIMIT);
    // Both processes registered with the job server, and idle.
    let mut status = serde_json::Value::Null;
    assert!(
        poll_until(LIMIT, || {
            status = get(http, "/api/status").json();
            status["jobs"][1]["idle"] == 2
                && status["queues"].as_array().is_some_and(|q| {
                    q.iter()
                        .any(|f| f["name"] == "reverse" && f["workers"] == 2)
                })
        }),
        "{status}"
    );
    let jobs = status["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["failing", "reverse"]);
    let job = &jobs[1];
    assert_eq!(
        (job["min"].as_u64(), job["max"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(job["processes"].as_u64(), Some(2));
    assert_eq!(job["lastrun"].as_i64(), Some(0));
    assert!(
        status["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "reverse" && f["workers"] == 2),
        "{status}"
    );
    let processes = get(http, "/api/processes").json();
    let mut pids: Vec<u64> = processes
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pool"] == "reverse")
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    let expected: Vec<u64> = reverse.iter().map(|&p| u64::from(p)).collect();
    assert_eq!(pids, expected);
    // Memory is sampled once a second.
    assert!(poll_until(LIMIT, || {
        get(http, "/api/processes").json()[0]["rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    }));

    // Changes, checked through /proc.
    let ok = post(http, "/api/jobs/reverse/processes", r#"{"min": 4}"#);
    assert_eq!(
        (ok.status, ok.json()),
        (200, serde_json::json!({"ok": true}))
    );
    let four = host.wait_workers("reverse", 4, LIMIT);
    let ok = post(
        http,
        "/api/jobs/reverse/processes",
        r#"{"min": 1, "max": 1}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    host.wait_workers("reverse", 1, LIMIT);
    let survivor = host.workers("reverse")[0];
    assert!(four.contains(&survivor));
    let ok = post(http, "/api/kill", &format!(r#"{{"pids": [{survivor}]}}"#));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        poll_until(LIMIT, || {
            let now = host.workers("reverse");
            now.len() == 1 && now[0] != survivor
        }),
        "kill replaces the process"
    );
    let ok = post(http, "/api/killall", r#"{"jobs": ["*"]}"#);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = post(http, "/api/reload", "");
    assert_eq!(ok.status, 200, "{}", ok.body);

    // What is wrong is named, with the console's codes.
    let error = |reply: common::http::Reply, status: u16, code: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"], code, "{body}");
        body["message"].as_str().unwrap().to_string()
    };
    let message = error(
        post(http, "/api/jobs/nope/processes", r#"{"min": 1}"#),
        404,
        "invalid_job_name",
    );
    assert_eq!(message, "nope");
    error(
        post(
            http,
            "/api/jobs/reverse/processes",
            r#"{"min": 3, "max": 2}"#,
        ),
        400,
        "invalid_value",
    );
    let message = error(
        post(http, "/api/jobs/reverse/processes", r#"{"min": "many"}"#),
        400,
        "invalid_input",
    );
    assert!(message.contains("min"), "{message}");
    error(
        post(http, "/api/jobs/reverse/processes", "{}"),
        400,
        "invalid_value",
    );
    error(
        post(http, "/api/kill", r#"{"pids": [1]}"#),
        400,
        "invalid_value",
    );
    error(
        post(http, "/api/killall", r#"{"jobs": []}"#),
        400,
        "invalid_value",
    );
    error(post(http, "/api/kill", "not json"), 400, "invalid_input");
    error(get(http, "/api/nothing"), 404, "not_found");
    assert_eq!(get(http, "/api/kill").status, 405, "changes are POSTs");
    // A changed [http] is for the next start, and each reload says so (found by a trial:
    // it was not mentioned, and [console]'s warning stopped after the first reload).
    let text = std::fs::read_to_string(&host.config).unwrap();
    let moved = text.replace(
        &format!("listen = \"127.0.0.1:{http}\""),
        "listen = \"127.0.0.1:1\"",
    );
    assert_ne!(text, moved);
    std::fs::write(&host.config, moved).unwrap();
    for _ in 0..2 {
        assert_eq!(post(http, "/api/reload", "").status, 200);
    }
    let warning = "[server], [console] and [http] changes take effect at the next start";
    assert!(
        poll_until(LIMIT, || host.log().matches(warning).count() == 2),
        "{}",
        host.log()
    );
    assert_eq!(
        get(http, "/api/status").status,
        200,
        "still on the old port"
    );
    assert!(common::host::alive(host.pid()), "{}", host.log());
}

#[test]
fn a_secret_guards_figures_and_changes_but_not_the_page() {
    // Any UTF-8 secret works, as it does on the console.
    let (host, http, _) = host_with_http("[console]\nlisten = \"\"\nsecret = \"s3crét\"\n");
    host.wait_workers("reverse", 2, LIMIT);
    let page = get(http, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>geardriver</title>"));
    for path in ["/metrics", "/api/status", "/api/processes"] {
        let denied = get(http, path);
        assert_eq!(denied.status, 401, "{path}");
        assert_eq!(
            denied.header("www-authenticate"),
            Some("Bearer realm=\"geardriver\"")
        );
        assert_eq!(denied.json()["error"], "auth_required");
    }
    let started = Instant::now();
    let wrong = request(http, "GET", "/metrics", None, Some("guess"));
    assert_eq!(wrong.status, 401);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a wrong secret is answered slowly: {:?}",
        started.elapsed()
    );
    let changed = request(
        http,
        "POST",
        "/api/jobs/reverse/processes",
        Some(r#"{"min": 3}"#),
        Some("guess"),
    );
    assert_eq!(changed.status, 401);
    assert_eq!(host.workers("reverse").len(), 2, "nothing changed");
    let right = request(http, "GET", "/metrics", None, Some("s3crét"));
    assert_eq!(right.status, 200);
    // The scheme's name is case-insensitive.
    let lower = common::http::request_with(
        http,
        "GET",
        "/api/status",
        None,
        &[
            ("Host", format!("127.0.0.1:{http}")),
            ("Authorization", "bearer s3crét".into()),
        ],
    );
    assert_eq!(lower.status, 200, "{}", lower.body);
    assert!(right.body.contains("geardriver_build_info"));
    let changed = request(
        http,
        "POST",
        "/api/jobs/reverse/processes",
        Some(r#"{"min": 3}"#),
        Some("s3crét"),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    host.wait_workers("reverse", 3, LIMIT);
}

#[test]
fn bad_http_settings_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = common::refused_start(
        dir.path(),
        "[console]\nlisten = \"\"\n[http]\nlisten = \"0.0.0.0:47399\"\n",
    );
    assert!(
        stderr.contains(
            "http.listen = 0.0.0.0:47399 is not a loopback address, so console.secret is required"
        ),
        "{stderr}"
    );
    let (_, stderr) = common::refused_start(dir.path(), "[http]\nlisten = \"nowhere\"\n");
    assert!(stderr.contains("http.listen"), "{stderr}");
    let port = free_port();
    let (_, stderr) = common::refused_start(
        dir.path(),
        &format!(
            "[console]\nlisten = \"127.0.0.1:{port}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    assert!(stderr.contains("give them different ports"), "{stderr}");
    // A port someone else holds: the host says which setting to change.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_, stderr) = common::refused_start(
        dir.path(),
        &format!("[console]\nlisten = \"\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    assert!(
        stderr.contains(&format!(
            "cannot listen for HTTP (metrics, API, status page) on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn the_status_page_shows_the_jobs_and_follows_a_change_in_a_browser() {
    if tool("chromium", "chromium").is_none() {
        return;
    }
    let (host, http, _) = host_with_http("");
    host.wait_workers("reverse", 2, LIMIT);
    // What a person sees: each job's row and its process count, as rendered.
    let expression = r##"Object.fromEntries([...document.querySelectorAll("#jobs tr[data-job]")].map(r => [r.dataset.job, r.querySelector(".processes").textContent]))"##;
    let watcher = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/watch_page.py"
        ))
        .args([&format!("http://127.0.0.1:{http}/"), expression, "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut watcher = ChildGuard(watcher);
    let (seen_tx, seen) = std::sync::mpsc::channel::<String>();
    let stdout = watcher.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = seen_tx.send(line);
        }
    });
    let wait_for = |want: &serde_json::Value, within: Duration| -> Result<(), Vec<String>> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match seen.recv_timeout(left) {
                Ok(line) => {
                    if serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .as_ref()
                        == Some(want)
                    {
                        return Ok(());
                    }
                    lines.push(line);
                }
                Err(_) => break,
            }
        }
        Err(lines)
    };
    // Chromium's start is slow on a loaded machine: the first render gets longer.
    let first = serde_json::json!({"failing": "1", "reverse": "2"});
    if let Err(lines) = wait_for(&first, Duration::from_secs(40)) {
        let _ = watcher.0.kill();
        let mut stderr = String::new();
        use std::io::Read;
        let _ = watcher.0.stderr.take().unwrap().read_to_string(&mut stderr);
        panic!("the page never showed {first}; it showed {lines:?}\n{stderr}");
    }
    let changed_at = Instant::now();
    let ok = post(http, "/api/jobs/reverse/processes", r#"{"min": 4}"#);
    assert_eq!(ok.status, 200);
    host.wait_workers("reverse", 4, LIMIT);
    let now = serde_json::json!({"failing": "1", "reverse": "4"});
    if let Err(lines) = wait_for(&now, Duration::from_secs(5)) {
        panic!("the page did not follow the change to 4 processes within 5 s of it: {lines:?}");
    }
    assert!(changed_at.elapsed() < Duration::from_secs(20));
}

/// Found by a trial: without a secret, a web page the operator visits could POST
/// /api/reload (a `no-cors` fetch), and a DNS-rebound name could read everything.
#[test]
fn a_web_page_cannot_drive_the_host() {
    let (host, http, _) = host_with_http("");
    host.wait_workers("reverse", 2, LIMIT);
    let with = |method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]| {
        let headers: Vec<(&str, String)> =
            headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
        common::http::request_with(http, method, path, body, &headers)
    };
    let here = format!("127.0.0.1:{http}");
    let refused = with(
        "POST",
        "/api/reload",
        Some(""),
        &[("Host", &here), ("Content-Type", "text/plain")],
    );
    assert_eq!(refused.status, 415, "{}", refused.body);
    let refused = with(
        "POST",
        "/api/jobs/reverse/processes",
        Some(r#"{"min": 4}"#),
        &[
            ("Host", &here),
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example:8765"),
        ],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = with(
        "GET",
        "/api/status",
        None,
        &[("Host", "evil.example:47301")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        with("GET", "/", None, &[("Host", "rebound.example")]).status,
        403
    );
    assert_eq!(host.workers("reverse").len(), 2, "nothing changed");
    // The host's own page, by address or localhost, may.
    let local = format!("localhost:{http}");
    assert_eq!(
        with("GET", "/api/status", None, &[("Host", &local)]).status,
        200
    );
    let origin = format!("http://{here}");
    let ok = with(
        "POST",
        "/api/jobs/reverse/processes",
        Some(r#"{"min": 3}"#),
        &[
            ("Host", &here),
            ("Content-Type", "application/json"),
            ("Origin", &origin),
        ],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    host.wait_workers("reverse", 3, LIMIT);
}

/// Found by a trial: a body sent a byte at a time held its connection for 5 minutes, and
/// 64 of them locked everyone out.
#[test]
fn a_request_that_trickles_in_is_cut_off() {
    use std::io::{Read, Write};
    let (host, http, _) = host_with_http("");
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    slow.write_all(
        format!(
            "POST /api/kill HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut reply = String::new();
    let _ = slow.read_to_string(&mut reply);
    let took = started.elapsed();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(common::host::alive(host.pid()));
}

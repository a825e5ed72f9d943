//! The plugin path a worker process runs (codecs, job context, hooks, panics), served
//! in-process through `worker_process::prepare` against a real gearmand and a real client.

use crate::common;

use async_trait::async_trait;
use bytes::Bytes;
use common::{RunningWorker, complete, outcome};
use geardriver::gearman::{Client, ClientOptions, JobEvent, JobOutcome, JobRequest};
use geardriver::plugin::{JobContext, Json, Payload, Registry, WorkError, Worker};
use geardriver::stats::StatsTable;
use geardriver::worker_process::{self, FunctionSpec, Runner, StatsSlot, WorkerSpec};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(15);

/// Records its hooks and the job in order; fails on "fail", panics on "panic".
struct Hooked {
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Worker for Hooked {
    type Input = String;
    type Output = String;

    fn begin(&self, job: &JobContext) {
        self.log
            .lock()
            .unwrap()
            .push(format!("begin {}", job.function));
    }

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        self.log.lock().unwrap().push(format!("run {input}"));
        match input.as_str() {
            "fail" => Err(WorkError::new("hooked: asked to fail")),
            "panic" => panic!("hooked: asked to panic"),
            _ => Ok(format!("done {input}")),
        }
    }

    fn end(&self, _job: &JobContext) {
        self.log.lock().unwrap().push("end".into());
    }
}

/// Reports progress through the job context, then returns what it knows of the job.
struct Progress;

#[async_trait]
impl Worker for Progress {
    type Input = Payload;
    type Output = Json<serde_json::Value>;

    async fn run(
        &self,
        job: &JobContext,
        _input: Payload,
    ) -> Result<Json<serde_json::Value>, WorkError> {
        job.status(1, 3);
        job.data("chunk-1;");
        job.warning("half way");
        job.status(3, 3);
        Ok(Json(serde_json::json!({
            "function": &*job.function,
            "unique": String::from_utf8_lossy(&job.unique),
            "handle_seen": !job.handle.is_empty(),
        })))
    }
}

fn function(name: &str, plugin: &str, decode: &str, encode: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        run: Runner::Plugin(plugin.into()),
        decode: decode.into(),
        encode: encode.into(),
        timeout_ms: None,
        prefetch: true,
        env: Default::default(),
    }
}

/// Serves `functions` with `registry`, as a worker process would.
fn serve(
    gearmand: &common::Gearmand,
    registry: &Registry,
    functions: Vec<FunctionSpec>,
    stats: Option<StatsSlot>,
) -> RunningWorker {
    let spec = WorkerSpec {
        pool: "test".into(),
        servers: vec![gearmand.addr().to_string()],
        functions,
        client_id: "plugins-test".into(),
        stats,
        max_jobs: None,
        max_lifetime_ms: None,
        parent_pid: None,
        shutdown_timeout_ms: 0,
        concurrency: 1,
    };
    let shutdown = CancellationToken::new();
    let (config, handler) = worker_process::prepare(&spec, registry, shutdown.clone())
        .unwrap()
        .remove(0);
    RunningWorker::spawn(config, handler, shutdown)
}

fn client(gearmand: &common::Gearmand) -> Client {
    Client::new(vec![gearmand.addr()], ClientOptions::default()).unwrap()
}

fn exception(s: &str) -> JobOutcome {
    JobOutcome::failed_with(s.to_string())
}

both_servers! {
    async fn echo_and_wordcount_under_every_codec(gearmand) {
        let table = StatsTable::create(4).unwrap();
        let registry = Registry::with_builtins();
        let worker = serve(
            &gearmand,
            &registry,
            vec![
                function("echo_raw", "echo", "raw", "raw"),
                function("echo_json", "echo", "json", "json"),
                function("echo_raw_json", "echo", "raw", "json"),
                function("echo_json_raw", "echo", "json", "raw"),
                function("wc_json", "wordcount", "json", "json"),
                function("wc_raw", "wordcount", "raw", "raw"),
                function("rev", "reverse", "raw", "raw"),
            ],
            Some(StatsSlot {
                fd: table.share_in_process().unwrap(),
                slot: 1,
                more: Vec::new(),
            }),
        );
        let c = client(&gearmand);
        assert_eq!(
            outcome(&c, "echo_raw", "any \u{0} bytes").await,
            complete("any \u{0} bytes")
        );
        assert_eq!(
            outcome(&c, "echo_json", r#"{ "a" : [1, 2] }"#).await,
            complete(r#"{"a":[1,2]}"#)
        );
        let invalid = outcome(&c, "echo_json", "{not json").await;
        let Some(message) = invalid.failure_message() else {
            panic!("{invalid:?}")
        };
        assert!(
            message.starts_with(b"json: invalid input: key must be a string"),
            "{invalid:?}"
        );
        // The codec's message is the job's lasterror_msg, and the process keeps serving.
        let slot = table.read(1).unwrap();
        assert!(
            slot.lasterror_msg.starts_with("json: invalid input"),
            "{slot:?}"
        );
        assert_eq!(
            slot.lasterror_function,
            Some(1),
            "echo_json is the 2nd function"
        );
        assert_eq!(
            outcome(&c, "echo_raw_json", "plain text").await,
            complete("\"plain text\"")
        );
        assert_eq!(
            outcome(&c, "echo_json_raw", "[true,null]").await,
            complete("[true,null]")
        );
        assert_eq!(
            outcome(&c, "wc_json", r#"{"text": "one two\nthree"}"#).await,
            complete(r#"{"lines":2,"words":3}"#)
        );
        assert_eq!(
            outcome(&c, "wc_raw", r#"{"text": "a b c d"}"#).await,
            complete(r#"{"lines":1,"words":4}"#)
        );
        let wrong = outcome(&c, "wc_json", r#"{"txt": "x"}"#).await;
        let Some(message) = wrong.failure_message() else {
            panic!("{wrong:?}")
        };
        assert!(
            message.starts_with(b"unexpected input: unknown field `txt`"),
            "{wrong:?}"
        );
        let not_json = outcome(&c, "wc_raw", "just words").await;
        assert!(matches!(not_json, JobOutcome::Fail { last_warning: Some(_) }), "{not_json:?}");
        assert_eq!(
            outcome(&c, "rev", "\u{e9}t\u{e9}!").await,
            complete("!\u{e9}t\u{e9}")
        );
        let bad_utf8 = c
            .run(JobRequest::new("rev", Bytes::from_static(b"\xff\xfe")))
            .await
            .unwrap();
        let Some(message) = bad_utf8.failure_message() else {
            panic!("{bad_utf8:?}")
        };
        assert!(
            message.starts_with(b"the workload is not UTF-8 text"),
            "{bad_utf8:?}"
        );
        let slot = table.read(1).unwrap();
        assert_eq!((slot.jobs_done, slot.jobs_failed), (7, 4), "{slot:?}");
        worker.stop().await;
    }
}

both_servers! {
    async fn job_context_packets_reach_a_real_client(gearmand) {
        let registry = Registry::with_builtins().register("progress", Progress);
        let worker = serve(
            &gearmand,
            &registry,
            vec![function("prog", "progress", "raw", "json")],
            None,
        );
        let c = client(&gearmand);
        let mut job = c
            .submit(JobRequest::new("prog", "x").unique("my-unique"))
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Some(event) = tokio::time::timeout(LIMIT, job.next_event()).await.unwrap() {
            events.push(event.unwrap());
        }
        assert_eq!(
            events,
            vec![
                JobEvent::Status {
                    numerator: 1,
                    denominator: 3
                },
                JobEvent::Data(Bytes::from("chunk-1;")),
                JobEvent::Warning(Bytes::from("half way")),
                JobEvent::Status {
                    numerator: 3,
                    denominator: 3
                },
                JobEvent::Complete(Bytes::from(
                    r#"{"function":"prog","handle_seen":true,"unique":"my-unique"}"#
                )),
            ]
        );
        // The C client sees the data chunk and the result too.
        if let Some(mut cli) = common::gearman_cli() {
            let out = tokio::task::spawn_blocking(move || {
                cli.args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &gearmand.port.to_string(),
                    "-f",
                    "prog",
                    "y",
                ])
                .output()
                .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.starts_with("chunk-1;"), "{stdout}");
            assert!(stdout.contains(r#""function":"prog""#), "{stdout}");
        }
        worker.stop().await;
    }
}

both_servers! {
    async fn hooks_run_around_every_job_and_panics_are_caught(gearmand) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let registry = Registry::with_builtins().register("hooked", Hooked { log: log.clone() });
        let worker = serve(
            &gearmand,
            &registry,
            vec![function("hooked", "hooked", "raw", "raw")],
            None,
        );
        let c = client(&gearmand);
        assert_eq!(outcome(&c, "hooked", "one").await, complete("done one"));
        assert_eq!(
            outcome(&c, "hooked", "fail").await,
            exception("hooked: asked to fail")
        );
        assert_eq!(
            outcome(&c, "hooked", "panic").await,
            exception("panic: hooked: asked to panic")
        );
        // The same process keeps serving after a panic.
        assert_eq!(outcome(&c, "hooked", "two").await, complete("done two"));
        assert_eq!(
            *log.lock().unwrap(),
            [
                "begin hooked",
                "run one",
                "end", //
                "begin hooked",
                "run fail",
                "end", //
                "begin hooked",
                "run panic",
                "end", //
                "begin hooked",
                "run two",
                "end",
            ]
        );
        // A client that did not ask for exceptions gets WORK_FAIL.
        let plain = Client::new(
            vec![gearmand.addr()],
            ClientOptions {
                exceptions: false,
                ..Default::default()
            },
        )
        .unwrap();
        let panicked = outcome(&plain, "hooked", "panic").await;
        assert!(
            matches!(panicked, JobOutcome::Fail { last_warning: Some(_) }),
            "{panicked:?}"
        );
        worker.stop().await;
    }
}

/// A codec a binary registers: workloads are `key=value` lines, results likewise.
struct KeyValues;

impl geardriver::plugin::Codec for KeyValues {
    fn decode(&self, bytes: Bytes) -> Result<Payload, String> {
        let text = std::str::from_utf8(&bytes).map_err(|_| "kv: not text".to_string())?;
        let mut map = serde_json::Map::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("kv: no '=' in {line:?}"))?;
            map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
        Ok(Payload::Value(serde_json::Value::Object(map)))
    }

    fn encode(&self, payload: Payload) -> Result<Bytes, String> {
        match payload {
            Payload::Value(serde_json::Value::Object(map)) => Ok(Bytes::from(
                map.iter()
                    .map(|(k, v)| {
                        format!("{k}={}\n", v.as_str().map_or(v.to_string(), str::to_string))
                    })
                    .collect::<String>(),
            )),
            other => Err(format!("kv: cannot encode {other:?}")),
        }
    }
}

both_servers! {
    async fn a_binary_can_register_its_own_codec(gearmand) {
        let registry = Registry::with_builtins().codec("kv", KeyValues);
        // The config accepts the new codec name, and refuses unknown ones, from this registry.
        let config = "[[jobs]]\nname = \"e\"\nworker = \"echo\"\ndecode = \"kv\"\nencode = \"kv\"\n";
        assert!(
            geardriver::config::Config::from_toml(config, std::path::Path::new("c.toml"), &registry)
                .is_ok()
        );
        assert!(
            geardriver::config::Config::from_toml(
                config,
                std::path::Path::new("c.toml"),
                &Registry::with_builtins()
            )
            .is_err()
        );
        let worker = serve(
            &gearmand,
            &registry,
            vec![
                function("kv_echo", "echo", "kv", "kv"),
                function("kv_to_json", "echo", "kv", "json"),
            ],
            None,
        );
        let c = client(&gearmand);
        assert_eq!(
            outcome(&c, "kv_echo", "b=2\na=1\n").await,
            complete("a=1\nb=2\n")
        );
        assert_eq!(
            outcome(&c, "kv_to_json", "name=Ada").await,
            complete(r#"{"name":"Ada"}"#)
        );
        assert_eq!(
            outcome(&c, "kv_echo", "oops").await,
            exception("kv: no '=' in \"oops\"")
        );
        worker.stop().await;
    }
}

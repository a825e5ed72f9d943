//! geardriver: a Gearman job-driver worker host.
//!
//! What lives where:
//! - [`gearman`]: the protocol (packets, codec, admin text protocol), a client and the worker
//!   loop; it knows nothing of processes, config or the console.
//! - [`config`]: `config.toml`, raw and validated; [`plugin`]: the `Worker` trait, codecs and
//!   the registry; [`workers`]: the built-in workers (the top-level `workers/` directory).
//! - [`host`]: the composition root that wires and watches the parts; [`driver`]: the
//!   supervisor, process table and scaling; [`observer`]: the job servers' queues; [`stats`]: the shared-memory stats table; [`worker_process`]: what a
//!   worker process runs.
//! - [`console`]: the telnet-style admin console.
//! - [`cli`]: the `geardriver` command line; [`logging`]: the log format.

pub mod cli;
pub mod config;
pub mod console;
pub mod driver;
pub mod gearman;
pub mod host;
pub mod http;
pub mod keeper;
pub mod limits;
pub mod logging;
pub mod observer;
pub mod plugin;
pub mod process_group;
pub mod procinfo;
pub mod stats;
pub mod title;
pub mod worker_process;
#[path = "../workers/mod.rs"]
pub mod workers;

pub use plugin::{Codec, JobContext, Json, Payload, Registry, WorkError, Worker};

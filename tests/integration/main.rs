//! The integration tests, one crate (one binary to link, and every test free to run beside
//! every other): each module is one area, against real job servers, real worker processes
//! and real peers. `common` holds the fixtures.

#[macro_use]
mod common;

mod cli_submit_admin;
mod codec;
mod concurrency;
mod config;
mod conformance;
mod console;
mod docs;
mod driver;
mod events;
mod external_workers;
mod faults;
mod figures;
mod fleet;
mod fuzz_regressions;
mod gearman_manager;
mod gearmand_protocol;
mod http;
mod import;
mod interop;
mod migration;
mod output_and_states;
mod plugins;
mod prefetch;
mod process_titles;
mod queue;
mod server;
mod stats_stress;
mod systemd;
mod users;
mod worker_dirs;

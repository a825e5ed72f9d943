//! geardriver: a Gearman job-driver worker host.
//!
//! What lives where:
//! - [`gearman`]: the protocol (packets, codec, admin text protocol), a client and the worker
//!   loop; it knows nothing of processes, config or the console.
//! - [`cli`]: the command line of the `geardriver` binary, and the commands that only talk
//!   to a job server (`submit`, `admin`).

pub mod cli;
pub mod gearman;

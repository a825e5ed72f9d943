//! The Gearman protocol, knowing nothing of processes, config or console.
//!
//! - `packet`: packet types and typed packets; `codec`: bytes ⇄ packets, client and server side;
//! - `admin`: the text admin protocol's commands and replies; `admin_client`: a client for it;
//! - `client`: submitting and following jobs; `worker`: the loop every worker process runs;
//! - `server`: the built-in job server;
//! - `addr`: job server addresses.

// Sizes, counts and durations become wire values here: a cast that could cut or wrap one
// must be a checked conversion instead.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod addr;
pub mod admin;
pub mod admin_client;
pub mod client;
pub mod codec;
pub mod packet;
pub mod server;
pub mod worker;

pub use addr::{DEFAULT_PORT, ServerAddr};
pub use admin::{AdminCommand, AdminError, AdminReply, FunctionStatus};
pub use admin_client::{AdminClient, AdminClientError};
pub use client::{
    Client, ClientError, ClientOptions, JobEvent, JobHandle, JobOutcome, JobRequest, JobStatus,
    SubmittedJob,
};
pub use codec::{ClientCodec, Frame, ProtocolError, ServerCodec, ServerInbound, ServerOutbound};
pub use packet::{Magic, Packet, PacketType, Priority};
pub use worker::{
    Ability, AssignedJob, JobAbort, JobFailure, JobHandler, WorkUpdates, WorkerConfig,
};

//! Gearman binary packets as typed values.
//!
//! Every packet type of gearmand's `PROTOCOL` document (1–42; 5 is unused) is a
//! [`PacketType`], and every packet a peer can send is a [`Packet`] variant whose fields are
//! the packet's arguments, already split and, where the protocol defines numbers, parsed.
//! The codec (`codec.rs`) is the only place that turns bytes into these values and back, so
//! nothing else in the crate sees a raw packet number or a NUL-separated argument list.
//!
//! The six SUBMIT_JOB variants differ only in priority and background; they are one
//! [`Packet::Submit`] variant carrying both, which is still a one-to-one mapping to the wire.

use bytes::Bytes;
use std::fmt;

/// The 4-byte magic that starts every binary packet: requests go to a job server, responses
/// come from one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Magic {
    /// `"\0REQ"`: client or worker to server.
    Req,
    /// `"\0RES"`: server to client or worker.
    Res,
}

impl Magic {
    pub const REQ_BYTES: [u8; 4] = *b"\0REQ";
    pub const RES_BYTES: [u8; 4] = *b"\0RES";

    pub fn bytes(self) -> &'static [u8; 4] {
        match self {
            Magic::Req => &Self::REQ_BYTES,
            Magic::Res => &Self::RES_BYTES,
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Magic> {
        match bytes {
            b"\0REQ" => Some(Magic::Req),
            b"\0RES" => Some(Magic::Res),
            _ => None,
        }
    }
}

/// Which magic a packet type may travel with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Only sent to a job server.
    Request,
    /// Only sent by a job server.
    Response,
    /// WORK_* packets: a worker sends them as requests, the server relays them as responses.
    Both,
}

impl Direction {
    pub fn allows(self, magic: Magic) -> bool {
        matches!(
            (self, magic),
            (Direction::Both, _)
                | (Direction::Request, Magic::Req)
                | (Direction::Response, Magic::Res)
        )
    }
}

/// Job priority: the server hands out HIGH before NORMAL before LOW, across all functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            _ => Err(format!(
                "unknown priority {s:?}: expected low, normal or high"
            )),
        }
    }
}

macro_rules! packet_types {
    ($( $variant:ident = $num:literal, $name:literal, $arity:literal, $dir:ident; )*) => {
        /// A packet type number of the Gearman binary protocol.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum PacketType {
            $( $variant = $num, )*
        }

        impl PacketType {
            /// Every defined type, in number order (5 is unused and absent).
            pub const ALL: &'static [PacketType] = &[ $( PacketType::$variant, )* ];

            pub fn from_u32(n: u32) -> Option<PacketType> {
                match n {
                    $( $num => Some(PacketType::$variant), )*
                    _ => None,
                }
            }

            /// The name PROTOCOL gives the type, e.g. `CAN_DO`.
            pub fn name(self) -> &'static str {
                match self {
                    $( PacketType::$variant => $name, )*
                }
            }

            /// How many NUL-separated arguments the type carries.
            pub fn arity(self) -> usize {
                match self {
                    $( PacketType::$variant => $arity, )*
                }
            }

            /// Which magic the type may travel with.
            pub fn direction(self) -> Direction {
                match self {
                    $( PacketType::$variant => Direction::$dir, )*
                }
            }
        }
    };
}

packet_types! {
    CanDo = 1, "CAN_DO", 1, Request;
    CantDo = 2, "CANT_DO", 1, Request;
    ResetAbilities = 3, "RESET_ABILITIES", 0, Request;
    PreSleep = 4, "PRE_SLEEP", 0, Request;
    Noop = 6, "NOOP", 0, Response;
    SubmitJob = 7, "SUBMIT_JOB", 3, Request;
    JobCreated = 8, "JOB_CREATED", 1, Response;
    GrabJob = 9, "GRAB_JOB", 0, Request;
    NoJob = 10, "NO_JOB", 0, Response;
    JobAssign = 11, "JOB_ASSIGN", 3, Response;
    WorkStatus = 12, "WORK_STATUS", 3, Both;
    WorkComplete = 13, "WORK_COMPLETE", 2, Both;
    WorkFail = 14, "WORK_FAIL", 1, Both;
    GetStatus = 15, "GET_STATUS", 1, Request;
    EchoReq = 16, "ECHO_REQ", 1, Request;
    EchoRes = 17, "ECHO_RES", 1, Response;
    SubmitJobBg = 18, "SUBMIT_JOB_BG", 3, Request;
    Error = 19, "ERROR", 2, Response;
    StatusRes = 20, "STATUS_RES", 5, Response;
    SubmitJobHigh = 21, "SUBMIT_JOB_HIGH", 3, Request;
    SetClientId = 22, "SET_CLIENT_ID", 1, Request;
    CanDoTimeout = 23, "CAN_DO_TIMEOUT", 2, Request;
    AllYours = 24, "ALL_YOURS", 0, Request;
    WorkException = 25, "WORK_EXCEPTION", 2, Both;
    OptionReq = 26, "OPTION_REQ", 1, Request;
    OptionRes = 27, "OPTION_RES", 1, Response;
    WorkData = 28, "WORK_DATA", 2, Both;
    WorkWarning = 29, "WORK_WARNING", 2, Both;
    GrabJobUniq = 30, "GRAB_JOB_UNIQ", 0, Request;
    JobAssignUniq = 31, "JOB_ASSIGN_UNIQ", 4, Response;
    SubmitJobHighBg = 32, "SUBMIT_JOB_HIGH_BG", 3, Request;
    SubmitJobLow = 33, "SUBMIT_JOB_LOW", 3, Request;
    SubmitJobLowBg = 34, "SUBMIT_JOB_LOW_BG", 3, Request;
    SubmitJobSched = 35, "SUBMIT_JOB_SCHED", 8, Request;
    SubmitJobEpoch = 36, "SUBMIT_JOB_EPOCH", 4, Request;
    SubmitReduceJob = 37, "SUBMIT_REDUCE_JOB", 4, Request;
    SubmitReduceJobBackground = 38, "SUBMIT_REDUCE_JOB_BACKGROUND", 4, Request;
    GrabJobAll = 39, "GRAB_JOB_ALL", 0, Request;
    JobAssignAll = 40, "JOB_ASSIGN_ALL", 5, Response;
    GetStatusUnique = 41, "GET_STATUS_UNIQUE", 1, Request;
    StatusResUnique = 42, "STATUS_RES_UNIQUE", 6, Response;
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PacketType {
    /// The submit type for a priority and background flag.
    pub fn submit(priority: Priority, background: bool) -> PacketType {
        match (priority, background) {
            (Priority::Normal, false) => PacketType::SubmitJob,
            (Priority::Normal, true) => PacketType::SubmitJobBg,
            (Priority::High, false) => PacketType::SubmitJobHigh,
            (Priority::High, true) => PacketType::SubmitJobHighBg,
            (Priority::Low, false) => PacketType::SubmitJobLow,
            (Priority::Low, true) => PacketType::SubmitJobLowBg,
        }
    }

    /// Priority and background flag of a submit type; `None` for every other type.
    pub fn submit_kind(self) -> Option<(Priority, bool)> {
        Some(match self {
            PacketType::SubmitJob => (Priority::Normal, false),
            PacketType::SubmitJobBg => (Priority::Normal, true),
            PacketType::SubmitJobHigh => (Priority::High, false),
            PacketType::SubmitJobHighBg => (Priority::High, true),
            PacketType::SubmitJobLow => (Priority::Low, false),
            PacketType::SubmitJobLowBg => (Priority::Low, true),
            _ => return None,
        })
    }
}

/// The five schedule fields of SUBMIT_JOB_SCHED, kept as sent (no server runs them).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Schedule {
    pub minute: Bytes,
    pub hour: Bytes,
    pub day_of_month: Bytes,
    pub month: Bytes,
    pub day_of_week: Bytes,
}

/// One Gearman binary packet with its arguments.
///
/// Numbers the protocol sends as decimal text (progress, timeouts, epochs, known/running
/// flags) are parsed by the codec; everything else stays bytes, since function names, unique
/// ids and payloads are opaque to the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    CanDo {
        function: Bytes,
    },
    CantDo {
        function: Bytes,
    },
    ResetAbilities,
    PreSleep,
    Noop,
    /// SUBMIT_JOB, SUBMIT_JOB_BG, SUBMIT_JOB_HIGH, SUBMIT_JOB_HIGH_BG, SUBMIT_JOB_LOW and
    /// SUBMIT_JOB_LOW_BG.
    Submit {
        priority: Priority,
        background: bool,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
    },
    JobCreated {
        handle: Bytes,
    },
    GrabJob,
    NoJob,
    JobAssign {
        handle: Bytes,
        function: Bytes,
        data: Bytes,
    },
    WorkStatus {
        handle: Bytes,
        numerator: u32,
        denominator: u32,
    },
    WorkComplete {
        handle: Bytes,
        data: Bytes,
    },
    WorkFail {
        handle: Bytes,
    },
    GetStatus {
        handle: Bytes,
    },
    EchoReq {
        data: Bytes,
    },
    EchoRes {
        data: Bytes,
    },
    Error {
        code: Bytes,
        text: Bytes,
    },
    StatusRes {
        handle: Bytes,
        known: bool,
        running: bool,
        numerator: u32,
        denominator: u32,
    },
    SetClientId {
        id: Bytes,
    },
    /// The timeout is in milliseconds, as gearmand 1.1.19 and later read it.
    CanDoTimeout {
        function: Bytes,
        timeout_ms: u32,
    },
    AllYours,
    WorkException {
        handle: Bytes,
        data: Bytes,
    },
    OptionReq {
        option: Bytes,
    },
    OptionRes {
        option: Bytes,
    },
    WorkData {
        handle: Bytes,
        data: Bytes,
    },
    WorkWarning {
        handle: Bytes,
        data: Bytes,
    },
    GrabJobUniq,
    JobAssignUniq {
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
    },
    /// The schedule is boxed: nothing runs it, and inline it would double every packet's size.
    SubmitJobSched {
        function: Bytes,
        unique: Bytes,
        schedule: Box<Schedule>,
        data: Bytes,
    },
    SubmitJobEpoch {
        function: Bytes,
        unique: Bytes,
        epoch: u64,
        data: Bytes,
    },
    /// SUBMIT_REDUCE_JOB and SUBMIT_REDUCE_JOB_BACKGROUND.
    SubmitReduceJob {
        background: bool,
        function: Bytes,
        unique: Bytes,
        reducer: Bytes,
        data: Bytes,
    },
    GrabJobAll,
    JobAssignAll {
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        reducer: Bytes,
        data: Bytes,
    },
    GetStatusUnique {
        unique: Bytes,
    },
    /// gearmand puts the unique id first, where STATUS_RES has the handle.
    StatusResUnique {
        unique: Bytes,
        known: bool,
        running: bool,
        numerator: u32,
        denominator: u32,
        waiting: u32,
    },
}

impl Packet {
    /// The wire type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::CanDo { .. } => PacketType::CanDo,
            Packet::CantDo { .. } => PacketType::CantDo,
            Packet::ResetAbilities => PacketType::ResetAbilities,
            Packet::PreSleep => PacketType::PreSleep,
            Packet::Noop => PacketType::Noop,
            Packet::Submit {
                priority,
                background,
                ..
            } => PacketType::submit(*priority, *background),
            Packet::JobCreated { .. } => PacketType::JobCreated,
            Packet::GrabJob => PacketType::GrabJob,
            Packet::NoJob => PacketType::NoJob,
            Packet::JobAssign { .. } => PacketType::JobAssign,
            Packet::WorkStatus { .. } => PacketType::WorkStatus,
            Packet::WorkComplete { .. } => PacketType::WorkComplete,
            Packet::WorkFail { .. } => PacketType::WorkFail,
            Packet::GetStatus { .. } => PacketType::GetStatus,
            Packet::EchoReq { .. } => PacketType::EchoReq,
            Packet::EchoRes { .. } => PacketType::EchoRes,
            Packet::Error { .. } => PacketType::Error,
            Packet::StatusRes { .. } => PacketType::StatusRes,
            Packet::SetClientId { .. } => PacketType::SetClientId,
            Packet::CanDoTimeout { .. } => PacketType::CanDoTimeout,
            Packet::AllYours => PacketType::AllYours,
            Packet::WorkException { .. } => PacketType::WorkException,
            Packet::OptionReq { .. } => PacketType::OptionReq,
            Packet::OptionRes { .. } => PacketType::OptionRes,
            Packet::WorkData { .. } => PacketType::WorkData,
            Packet::WorkWarning { .. } => PacketType::WorkWarning,
            Packet::GrabJobUniq => PacketType::GrabJobUniq,
            Packet::JobAssignUniq { .. } => PacketType::JobAssignUniq,
            Packet::SubmitJobSched { .. } => PacketType::SubmitJobSched,
            Packet::SubmitJobEpoch { .. } => PacketType::SubmitJobEpoch,
            Packet::SubmitReduceJob { background, .. } => {
                if *background {
                    PacketType::SubmitReduceJobBackground
                } else {
                    PacketType::SubmitReduceJob
                }
            }
            Packet::GrabJobAll => PacketType::GrabJobAll,
            Packet::JobAssignAll { .. } => PacketType::JobAssignAll,
            Packet::GetStatusUnique { .. } => PacketType::GetStatusUnique,
            Packet::StatusResUnique { .. } => PacketType::StatusResUnique,
        }
    }

    /// The job handle a WORK_* packet refers to.
    pub fn work_handle(&self) -> Option<&Bytes> {
        match self {
            Packet::WorkStatus { handle, .. }
            | Packet::WorkComplete { handle, .. }
            | Packet::WorkFail { handle }
            | Packet::WorkException { handle, .. }
            | Packet::WorkData { handle, .. }
            | Packet::WorkWarning { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// Whether a WORK_* packet ends its job (COMPLETE, FAIL, EXCEPTION).
    pub fn is_final_work_packet(&self) -> bool {
        matches!(
            self,
            Packet::WorkComplete { .. } | Packet::WorkFail { .. } | Packet::WorkException { .. }
        )
    }
}

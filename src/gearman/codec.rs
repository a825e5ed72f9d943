//! Bytes ⇄ [`Packet`]: the only place the Gearman wire format is read or written.
//!
//! [`decode_frame`] and [`encode_frame`] are the pure core: a 12-byte header (magic, type,
//! size), then the type's arguments separated by NUL, the last one opaque. Decoding checks
//! the magic, the type, the magic's direction, the size against a cap (before any
//! allocation) and the argument layout of the type; encoding checks the layout too, so a
//! function name with a NUL in it is an error here rather than a corrupt stream there.
//!
//! Two tokio-util codecs wrap it, one per side of a connection:
//! [`ClientCodec`] (clients and workers: sends `\0REQ`, accepts only `\0RES`) and
//! [`ServerCodec`] (job servers: accepts `\0REQ` packets *and* text admin lines on the same
//! port, telling them apart by the first byte as gearmand does, and sends `\0RES`).

use super::packet::{Direction, Magic, Packet, PacketType, Schedule};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;
use tokio_util::codec::{Decoder, Encoder};

/// Size of the fixed packet header.
pub const HEADER_LEN: usize = 12;
/// Default cap on a packet's data size: large enough for any sane payload, small enough that
/// a hostile length cannot make us buffer gigabytes.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;
/// Default cap on a text admin line.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// Everything that can be wrong with bytes on a Gearman connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("bad magic {found:?}: expected \"\\0REQ\" or \"\\0RES\"")]
    BadMagic { found: String },
    #[error("unknown packet type {0}")]
    UnknownType(u32),
    #[error("{ptype} packet is a {expected} packet but came with {magic:?} magic")]
    WrongMagic {
        ptype: PacketType,
        expected: &'static str,
        magic: Magic,
    },
    #[error("{ptype} packet of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        ptype: PacketType,
        size: usize,
        max: usize,
    },
    #[error("{ptype} packet needs {expected} arguments, found {found}")]
    Arity {
        ptype: PacketType,
        expected: usize,
        found: usize,
    },
    #[error("{ptype} packet takes no arguments but carries {size} bytes")]
    UnexpectedData { ptype: PacketType, size: usize },
    #[error("{ptype} packet: argument {arg} {problem}")]
    BadArgument {
        ptype: PacketType,
        arg: &'static str,
        problem: String,
    },
    #[error("text line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A decoded packet with the magic it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub magic: Magic,
    pub packet: Packet,
}

/// Decodes one packet from the front of `src`.
///
/// `Ok(None)` means more bytes are needed; the buffer is left as it was (with room reserved
/// for the announced packet). An error means the stream is unusable from here on.
pub fn decode_frame(src: &mut BytesMut, max_size: usize) -> Result<Option<Frame>, ProtocolError> {
    // Check the magic on whatever part of it has arrived, so garbage fails at once instead of
    // waiting for twelve bytes.
    let seen = src.len().min(4);
    if src[..seen] != Magic::REQ_BYTES[..seen] && src[..seen] != Magic::RES_BYTES[..seen] {
        return Err(ProtocolError::BadMagic {
            found: String::from_utf8_lossy(&src[..seen]).into_owned(),
        });
    }
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let magic = Magic::from_bytes(&src[..4]).expect("magic checked above");
    let number = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
    let size = u32::from_be_bytes([src[8], src[9], src[10], src[11]]) as usize;
    let ptype = PacketType::from_u32(number).ok_or(ProtocolError::UnknownType(number))?;
    check_direction(ptype, magic)?;
    if size > max_size {
        return Err(ProtocolError::TooLarge {
            ptype,
            size,
            max: max_size,
        });
    }
    if src.len() < HEADER_LEN + size {
        src.reserve(HEADER_LEN + size - src.len());
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    let body = src.split_to(size).freeze();
    let packet = decode_body(ptype, body)?;
    Ok(Some(Frame { magic, packet }))
}

fn check_direction(ptype: PacketType, magic: Magic) -> Result<(), ProtocolError> {
    let direction = ptype.direction();
    if direction.allows(magic) {
        return Ok(());
    }
    Err(ProtocolError::WrongMagic {
        ptype,
        expected: match direction {
            Direction::Request => "request",
            Direction::Response => "response",
            Direction::Both => "request or response",
        },
        magic,
    })
}

/// Splits a packet body into its arguments without copying.
struct Args {
    ptype: PacketType,
    rest: Bytes,
    taken: usize,
}

impl Args {
    fn new(ptype: PacketType, body: Bytes) -> Self {
        Args {
            ptype,
            rest: body,
            taken: 0,
        }
    }

    /// The next argument; the last one is everything that is left.
    fn next(&mut self) -> Result<Bytes, ProtocolError> {
        self.taken += 1;
        if self.taken == self.ptype.arity() {
            return Ok(std::mem::take(&mut self.rest));
        }
        match self.rest.iter().position(|&b| b == 0) {
            Some(at) => {
                let arg = self.rest.split_to(at);
                self.rest.advance(1);
                Ok(arg)
            }
            None => Err(ProtocolError::Arity {
                ptype: self.ptype,
                expected: self.ptype.arity(),
                found: self.taken,
            }),
        }
    }

    fn number<T: std::str::FromStr>(&mut self, arg: &'static str) -> Result<T, ProtocolError> {
        let raw = self.next()?;
        parse_decimal(&raw).ok_or_else(|| ProtocolError::BadArgument {
            ptype: self.ptype,
            arg,
            problem: format!(
                "is not a decimal number: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        })
    }

    fn flag(&mut self, arg: &'static str) -> Result<bool, ProtocolError> {
        let raw = self.next()?;
        match &raw[..] {
            b"0" => Ok(false),
            b"1" => Ok(true),
            other => Err(ProtocolError::BadArgument {
                ptype: self.ptype,
                arg,
                problem: format!("must be 0 or 1, got {:?}", String::from_utf8_lossy(other)),
            }),
        }
    }
}

/// CAN_DO_TIMEOUT's milliseconds read as gearmand reads them (`strtol`): leading spaces and
/// a sign allowed, digits up to the first other byte, anything else 0 (no timeout). Workers
/// in the wild send other things: npm's `gearman` sends a 4-byte binary integer, which
/// gearmand takes as 0 and so does this. Negative is 0, too large is `u32::MAX`.
fn timeout_millis(raw: &[u8]) -> u32 {
    let text = raw.trim_ascii_start();
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
    if negative {
        0
    } else {
        u32::try_from(value).unwrap_or(u32::MAX)
    }
}

fn parse_decimal<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn decode_body(ptype: PacketType, body: Bytes) -> Result<Packet, ProtocolError> {
    if ptype.arity() == 0 && !body.is_empty() {
        return Err(ProtocolError::UnexpectedData {
            ptype,
            size: body.len(),
        });
    }
    use PacketType as T;
    let mut body = body;
    // gearmand 1.1 sends the WORK_FAIL it makes from a WORK_EXCEPTION (for clients that did
    // not ask for exceptions) as "handle\0". A handle never holds a NUL, so a trailing one on
    // a handle-only packet is dropped rather than kept as part of the handle.
    if matches!(ptype, T::JobCreated | T::WorkFail | T::GetStatus) {
        if body.last() == Some(&0) {
            body.truncate(body.len() - 1);
        }
        // The same rule as on encode, so everything decoded can be sent on (found by fuzzing).
        if body.contains(&0) {
            return Err(ProtocolError::BadArgument {
                ptype,
                arg: "handle",
                problem: "contains a NUL byte".into(),
            });
        }
    }
    let mut a = Args::new(ptype, body);
    Ok(match ptype {
        T::CanDo => Packet::CanDo {
            function: a.next()?,
        },
        T::CantDo => Packet::CantDo {
            function: a.next()?,
        },
        T::ResetAbilities => Packet::ResetAbilities,
        T::PreSleep => Packet::PreSleep,
        T::Noop => Packet::Noop,
        T::SubmitJob
        | T::SubmitJobBg
        | T::SubmitJobHigh
        | T::SubmitJobHighBg
        | T::SubmitJobLow
        | T::SubmitJobLowBg => {
            let (priority, background) = ptype.submit_kind().expect("a submit type");
            Packet::Submit {
                priority,
                background,
                function: a.next()?,
                unique: a.next()?,
                data: a.next()?,
            }
        }
        T::JobCreated => Packet::JobCreated { handle: a.next()? },
        T::GrabJob => Packet::GrabJob,
        T::NoJob => Packet::NoJob,
        T::JobAssign => Packet::JobAssign {
            handle: a.next()?,
            function: a.next()?,
            data: a.next()?,
        },
        T::WorkStatus => Packet::WorkStatus {
            handle: a.next()?,
            numerator: a.number("numerator")?,
            denominator: a.number("denominator")?,
        },
        T::WorkComplete => Packet::WorkComplete {
            handle: a.next()?,
            data: a.next()?,
        },
        T::WorkFail => Packet::WorkFail { handle: a.next()? },
        T::GetStatus => Packet::GetStatus { handle: a.next()? },
        T::EchoReq => Packet::EchoReq { data: a.next()? },
        T::EchoRes => Packet::EchoRes { data: a.next()? },
        T::Error => Packet::Error {
            code: a.next()?,
            text: a.next()?,
        },
        T::StatusRes => Packet::StatusRes {
            handle: a.next()?,
            known: a.flag("known")?,
            running: a.flag("running")?,
            numerator: a.number("numerator")?,
            denominator: a.number("denominator")?,
        },
        T::SetClientId => Packet::SetClientId { id: a.next()? },
        T::CanDoTimeout => Packet::CanDoTimeout {
            function: a.next()?,
            timeout_ms: timeout_millis(&a.next()?),
        },
        T::AllYours => Packet::AllYours,
        T::WorkException => Packet::WorkException {
            handle: a.next()?,
            data: a.next()?,
        },
        T::OptionReq => Packet::OptionReq { option: a.next()? },
        T::OptionRes => Packet::OptionRes { option: a.next()? },
        T::WorkData => Packet::WorkData {
            handle: a.next()?,
            data: a.next()?,
        },
        T::WorkWarning => Packet::WorkWarning {
            handle: a.next()?,
            data: a.next()?,
        },
        T::GrabJobUniq => Packet::GrabJobUniq,
        T::JobAssignUniq => Packet::JobAssignUniq {
            handle: a.next()?,
            function: a.next()?,
            unique: a.next()?,
            data: a.next()?,
        },
        T::SubmitJobSched => Packet::SubmitJobSched {
            function: a.next()?,
            unique: a.next()?,
            schedule: Box::new(Schedule {
                minute: a.next()?,
                hour: a.next()?,
                day_of_month: a.next()?,
                month: a.next()?,
                day_of_week: a.next()?,
            }),
            data: a.next()?,
        },
        T::SubmitJobEpoch => Packet::SubmitJobEpoch {
            function: a.next()?,
            unique: a.next()?,
            epoch: a.number("epoch")?,
            data: a.next()?,
        },
        T::SubmitReduceJob | T::SubmitReduceJobBackground => Packet::SubmitReduceJob {
            background: ptype == T::SubmitReduceJobBackground,
            function: a.next()?,
            unique: a.next()?,
            reducer: a.next()?,
            data: a.next()?,
        },
        T::GrabJobAll => Packet::GrabJobAll,
        T::JobAssignAll => Packet::JobAssignAll {
            handle: a.next()?,
            function: a.next()?,
            unique: a.next()?,
            reducer: a.next()?,
            data: a.next()?,
        },
        T::GetStatusUnique => Packet::GetStatusUnique { unique: a.next()? },
        T::StatusResUnique => Packet::StatusResUnique {
            unique: a.next()?,
            known: a.flag("known")?,
            running: a.flag("running")?,
            numerator: a.number("numerator")?,
            denominator: a.number("denominator")?,
            waiting: a.number("waiting")?,
        },
    })
}

/// Writes arguments after a header, checking that only the last one holds NUL bytes.
struct ArgWriter<'a> {
    ptype: PacketType,
    dst: &'a mut BytesMut,
}

impl ArgWriter<'_> {
    /// A NUL-terminated argument (every argument but the last).
    fn arg(&mut self, name: &'static str, value: &[u8]) -> Result<(), ProtocolError> {
        if value.contains(&0) {
            return Err(ProtocolError::BadArgument {
                ptype: self.ptype,
                arg: name,
                problem: "contains a NUL byte".into(),
            });
        }
        self.dst.put_slice(value);
        self.dst.put_u8(0);
        Ok(())
    }

    fn number(&mut self, name: &'static str, value: u64) -> Result<(), ProtocolError> {
        self.arg(name, value.to_string().as_bytes())
    }

    fn flag(&mut self, name: &'static str, value: bool) -> Result<(), ProtocolError> {
        self.arg(name, if value { b"1" } else { b"0" })
    }

    /// The last argument: opaque, its length given by the header.
    fn last(&mut self, value: &[u8]) -> Result<(), ProtocolError> {
        self.dst.put_slice(value);
        Ok(())
    }

    /// A handle as the last argument: it may not hold a NUL, since a decoder drops a trailing
    /// one (see `decode_body`).
    fn last_handle(&mut self, handle: &[u8]) -> Result<(), ProtocolError> {
        if handle.contains(&0) {
            return Err(ProtocolError::BadArgument {
                ptype: self.ptype,
                arg: "handle",
                problem: "contains a NUL byte".into(),
            });
        }
        self.last(handle)
    }

    fn last_number(&mut self, value: u64) -> Result<(), ProtocolError> {
        self.last(value.to_string().as_bytes())
    }
}

/// Appends one packet to `dst`. On error `dst` is left as it was.
pub fn encode_frame(
    magic: Magic,
    packet: &Packet,
    dst: &mut BytesMut,
    max_size: usize,
) -> Result<(), ProtocolError> {
    let ptype = packet.packet_type();
    check_direction(ptype, magic)?;
    let start = dst.len();
    dst.reserve(HEADER_LEN + 64);
    dst.put_slice(magic.bytes());
    dst.put_u32(ptype as u32);
    dst.put_u32(0); // patched below, once the body length is known
    let result = encode_body(packet, &mut ArgWriter { ptype, dst });
    let size = dst.len() - start - HEADER_LEN;
    let too_large = ProtocolError::TooLarge {
        ptype,
        size,
        max: max_size,
    };
    let result = match result {
        Ok(()) if size > max_size => Err(too_large),
        Ok(()) => u32::try_from(size).map_err(|_| too_large),
        Err(e) => Err(e),
    };
    let wire_size = match result {
        Ok(wire_size) => wire_size,
        Err(e) => {
            dst.truncate(start);
            return Err(e);
        }
    };
    dst[start + 8..start + HEADER_LEN].copy_from_slice(&wire_size.to_be_bytes());
    Ok(())
}

fn encode_body(packet: &Packet, w: &mut ArgWriter<'_>) -> Result<(), ProtocolError> {
    match packet {
        Packet::ResetAbilities
        | Packet::PreSleep
        | Packet::Noop
        | Packet::GrabJob
        | Packet::NoJob
        | Packet::AllYours
        | Packet::GrabJobUniq
        | Packet::GrabJobAll => Ok(()),
        Packet::CanDo { function } | Packet::CantDo { function } => w.last(function),
        Packet::Submit {
            function,
            unique,
            data,
            ..
        } => {
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.last(data)
        }
        Packet::JobCreated { handle }
        | Packet::WorkFail { handle }
        | Packet::GetStatus { handle } => w.last_handle(handle),
        Packet::JobAssign {
            handle,
            function,
            data,
        } => {
            w.arg("handle", handle)?;
            w.arg("function", function)?;
            w.last(data)
        }
        Packet::WorkStatus {
            handle,
            numerator,
            denominator,
        } => {
            w.arg("handle", handle)?;
            w.number("numerator", u64::from(*numerator))?;
            w.last_number(u64::from(*denominator))
        }
        Packet::WorkComplete { handle, data }
        | Packet::WorkException { handle, data }
        | Packet::WorkData { handle, data }
        | Packet::WorkWarning { handle, data } => {
            w.arg("handle", handle)?;
            w.last(data)
        }
        Packet::EchoReq { data } | Packet::EchoRes { data } => w.last(data),
        Packet::Error { code, text } => {
            w.arg("code", code)?;
            w.last(text)
        }
        Packet::StatusRes {
            handle,
            known,
            running,
            numerator,
            denominator,
        } => {
            w.arg("handle", handle)?;
            w.flag("known", *known)?;
            w.flag("running", *running)?;
            w.number("numerator", u64::from(*numerator))?;
            w.last_number(u64::from(*denominator))
        }
        Packet::SetClientId { id } => w.last(id),
        Packet::CanDoTimeout {
            function,
            timeout_ms,
        } => {
            w.arg("function", function)?;
            w.last_number(u64::from(*timeout_ms))
        }
        Packet::OptionReq { option } | Packet::OptionRes { option } => w.last(option),
        Packet::JobAssignUniq {
            handle,
            function,
            unique,
            data,
        } => {
            w.arg("handle", handle)?;
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.last(data)
        }
        Packet::SubmitJobSched {
            function,
            unique,
            schedule,
            data,
        } => {
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.arg("minute", &schedule.minute)?;
            w.arg("hour", &schedule.hour)?;
            w.arg("day of month", &schedule.day_of_month)?;
            w.arg("month", &schedule.month)?;
            w.arg("day of week", &schedule.day_of_week)?;
            w.last(data)
        }
        Packet::SubmitJobEpoch {
            function,
            unique,
            epoch,
            data,
        } => {
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.number("epoch", *epoch)?;
            w.last(data)
        }
        Packet::SubmitReduceJob {
            function,
            unique,
            reducer,
            data,
            ..
        } => {
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.arg("reducer", reducer)?;
            w.last(data)
        }
        Packet::JobAssignAll {
            handle,
            function,
            unique,
            reducer,
            data,
        } => {
            w.arg("handle", handle)?;
            w.arg("function", function)?;
            w.arg("unique", unique)?;
            w.arg("reducer", reducer)?;
            w.last(data)
        }
        Packet::GetStatusUnique { unique } => w.last(unique),
        Packet::StatusResUnique {
            unique,
            known,
            running,
            numerator,
            denominator,
            waiting,
        } => {
            w.arg("unique", unique)?;
            w.flag("known", *known)?;
            w.flag("running", *running)?;
            w.number("numerator", u64::from(*numerator))?;
            w.number("denominator", u64::from(*denominator))?;
            w.last_number(u64::from(*waiting))
        }
    }
}

/// The codec of clients and workers: sends requests, accepts only responses.
#[derive(Clone, Debug)]
pub struct ClientCodec {
    max_frame: usize,
}

impl ClientCodec {
    pub fn new(max_frame: usize) -> Self {
        ClientCodec { max_frame }
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        ClientCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for ClientCodec {
    type Item = Packet;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, ProtocolError> {
        if src.is_empty() {
            return Ok(None);
        }
        match decode_frame(src, self.max_frame)? {
            None => Ok(None),
            Some(Frame {
                magic: Magic::Res,
                packet,
            }) => Ok(Some(packet)),
            Some(Frame { magic, packet }) => Err(ProtocolError::WrongMagic {
                ptype: packet.packet_type(),
                expected: "response",
                magic,
            }),
        }
    }
}

impl Encoder<Packet> for ClientCodec {
    type Error = ProtocolError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_frame(Magic::Req, &packet, dst, self.max_frame)
    }
}

/// What a job server reads from a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerInbound {
    /// A binary request packet.
    Packet(Packet),
    /// One line of the text admin protocol, without its line ending.
    AdminLine(Bytes),
}

/// What a job server writes to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOutbound {
    /// A binary response packet.
    Packet(Packet),
    /// Text admin reply bytes, written as they are.
    Text(Bytes),
}

/// The codec of a job server connection, where binary packets and text admin lines share the
/// port: a frame starting with a NUL byte is binary, anything else is a text line.
#[derive(Clone, Debug)]
pub struct ServerCodec {
    max_frame: usize,
    max_line: usize,
}

impl ServerCodec {
    pub fn new(max_frame: usize, max_line: usize) -> Self {
        ServerCodec {
            max_frame,
            max_line,
        }
    }
}

impl Default for ServerCodec {
    fn default() -> Self {
        ServerCodec::new(DEFAULT_MAX_FRAME, DEFAULT_MAX_LINE)
    }
}

impl Decoder for ServerCodec {
    type Item = ServerInbound;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ServerInbound>, ProtocolError> {
        if src.is_empty() {
            return Ok(None);
        }
        if src[0] == 0 {
            return match decode_frame(src, self.max_frame)? {
                None => Ok(None),
                Some(Frame {
                    magic: Magic::Req,
                    packet,
                }) => Ok(Some(ServerInbound::Packet(packet))),
                Some(Frame { magic, packet }) => Err(ProtocolError::WrongMagic {
                    ptype: packet.packet_type(),
                    expected: "request",
                    magic,
                }),
            };
        }
        let window = src.len().min(self.max_line + 1);
        match src[..window].iter().position(|&b| b == b'\n') {
            Some(at) => {
                let mut line = src.split_to(at + 1);
                line.truncate(at);
                if line.last() == Some(&b'\r') {
                    line.truncate(at - 1);
                }
                Ok(Some(ServerInbound::AdminLine(line.freeze())))
            }
            None if src.len() > self.max_line => {
                Err(ProtocolError::LineTooLong { max: self.max_line })
            }
            None => Ok(None),
        }
    }
}

impl Encoder<ServerOutbound> for ServerCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: ServerOutbound, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match item {
            ServerOutbound::Packet(packet) => {
                encode_frame(Magic::Res, &packet, dst, self.max_frame)
            }
            ServerOutbound::Text(text) => {
                dst.extend_from_slice(&text);
                Ok(())
            }
        }
    }
}

//! Packet bodies: each type's arguments, NUL-separated, the last one opaque, read into a
//! typed [`Packet`] and written back from one. The header around them is the parent's.

use super::ProtocolError;
use crate::gearman::packet::{Packet, PacketType, Schedule};
use bytes::{Buf, BufMut, Bytes, BytesMut};

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

pub(super) fn decode_body(ptype: PacketType, body: Bytes) -> Result<Packet, ProtocolError> {
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
pub(super) struct ArgWriter<'a> {
    pub(super) ptype: PacketType,
    pub(super) dst: &'a mut BytesMut,
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

pub(super) fn encode_body(packet: &Packet, w: &mut ArgWriter<'_>) -> Result<(), ProtocolError> {
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

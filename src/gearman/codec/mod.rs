//! Bytes ⇄ [`Packet`]: the only place the Gearman wire format is read or written (the
//! header and the framing here; each type's arguments in `body`).
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

mod body;

use super::packet::{Direction, Magic, Packet, PacketType};
use body::{ArgWriter, decode_body, encode_body};
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

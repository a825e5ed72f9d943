//! Console input: lines of bytes, never trusted.
//!
//! A line ends with LF (a CR before it is dropped). Telnet negotiation (IAC sequences) is
//! removed, as are NUL bytes telnet sends after a bare CR. A line longer than the limit is
//! reported once and skipped up to its end; a line that is not UTF-8 is reported, not fatal.
//! Nothing a client sends can end the connection except its own EOF.

use bytes::{Buf, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// What one input line turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    TooLong,
    NotUtf8,
}

/// Splits console input into [`Line`]s, at most `max` bytes each.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    /// Inside a line that was too long: drop bytes up to its end.
    discarding: bool,
    /// How far the buffer has been searched for a newline.
    searched: usize,
}

impl LineCodec {
    pub fn new(max: usize) -> Self {
        LineCodec {
            max,
            discarding: false,
            searched: 0,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Line>, io::Error> {
        loop {
            let newline = src[self.searched..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + self.searched);
            match newline {
                Some(end) => {
                    let line = src.split_to(end + 1);
                    self.searched = 0;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if end > self.max {
                        // The whole line arrived at once, but it is still too long.
                        return Ok(Some(Line::TooLong));
                    }
                    return Ok(Some(clean(&line[..end])));
                }
                None if self.discarding => {
                    src.advance(src.len());
                    self.searched = 0;
                    return Ok(None);
                }
                None if src.len() > self.max => {
                    src.advance(src.len());
                    self.searched = 0;
                    self.discarding = true;
                    return Ok(Some(Line::TooLong));
                }
                None => {
                    self.searched = src.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Line>, io::Error> {
        // A last line without a newline still counts.
        if src.is_empty() || self.discarding {
            src.clear();
            return Ok(None);
        }
        let line = src.split_to(src.len());
        self.searched = 0;
        Ok(Some(clean(&line)))
    }
}

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Removes telnet commands, NULs and a trailing CR, then checks the text is UTF-8.
fn clean(raw: &[u8]) -> Line {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            IAC => match raw.get(i + 1) {
                // An escaped 0xFF is a data byte (and never valid UTF-8 on its own).
                Some(&IAC) => {
                    out.push(IAC);
                    i += 2;
                }
                Some(&SB) => {
                    // Subnegotiation: skip to IAC SE.
                    let end = raw[i + 2..].windows(2).position(|w| w == [IAC, SE]);
                    i = end.map_or(raw.len(), |e| i + 2 + e + 2);
                }
                Some(&cmd) if (WILL..=DONT).contains(&cmd) => i += 3,
                Some(_) => i += 2,
                None => i += 1,
            },
            0 => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    match String::from_utf8(out) {
        Ok(text) => Line::Text(text),
        Err(_) => Line::NotUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[&[u8]], max: usize) -> Vec<Line> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
        }
        if let Some(line) = codec.decode_eof(&mut buf).unwrap() {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.into())
    }

    #[test]
    fn splits_lines_whatever_the_chunks() {
        assert_eq!(
            lines(&[b"status\r\nsho", b"w x\n", b"\n"], 64),
            vec![text("status"), text("show x"), text("")]
        );
        assert_eq!(
            lines(&[b"quit"], 64),
            vec![text("quit")],
            "a last line without newline"
        );
    }

    #[test]
    fn telnet_negotiation_and_nuls_are_removed() {
        let input: &[u8] = b"\xff\xfd\x03\xff\xfb\x18\xff\xfa\x18\x01\xff\xf0status\r\0\n";
        assert_eq!(lines(&[input], 64), vec![text("status")]);
        assert_eq!(lines(&[b"\xff\xf4\n"], 64), vec![text("")], "IAC IP alone");
    }

    #[test]
    fn long_and_binary_lines_are_reported_and_skipped() {
        let long = vec![b'a'; 100];
        assert_eq!(
            lines(&[&long, &long, b"tail\nstatus\n"], 64),
            vec![Line::TooLong, text("status")],
            "reported once, skipped to its end"
        );
        let mut whole = vec![b'b'; 100];
        whole.extend_from_slice(b"\nnext\n");
        assert_eq!(
            lines(&[&whole], 64),
            vec![Line::TooLong, text("next")],
            "a long line in one read"
        );
        assert_eq!(
            lines(&[b"\xc3\x28\n", b"ok\n"], 64),
            vec![Line::NotUtf8, text("ok")]
        );
        assert_eq!(
            lines(&[b"\xff\xff\n"], 64),
            vec![Line::NotUtf8],
            "an escaped 0xFF data byte"
        );
    }
}

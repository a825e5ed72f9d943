//! Console input on arbitrary bytes: the line codec splits (any chunking), strips telnet
//! negotiation, caps lengths, and every line parses into a command, never panicking.
#![no_main]

use bytes::BytesMut;
use geardriver::console::command::Command;
use geardriver::console::line::{Line, LineCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = LineCodec::new(64);
    let mut buf = BytesMut::new();
    // Feed in two chunks, split where the first byte says.
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        while let Ok(Some(line)) = codec.decode(&mut buf) {
            if let Line::Text(text) = line {
                assert!(text.len() <= 64);
                let _ = Command::parse(&text);
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
});

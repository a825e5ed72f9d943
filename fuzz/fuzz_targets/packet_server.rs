//! The server side of the codec (binary packets and admin lines on one port) on arbitrary
//! bytes: no panic; decoded packets round-trip; admin lines parse without panicking.
#![no_main]

use bytes::BytesMut;
use geardriver::gearman::admin::AdminCommand;
use geardriver::gearman::codec::{ServerCodec, ServerInbound, decode_frame, encode_frame};
use geardriver::gearman::packet::Magic;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut codec = ServerCodec::new(1 << 16, 512);
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        match item {
            ServerInbound::Packet(packet) => {
                let mut wire = BytesMut::new();
                encode_frame(Magic::Req, &packet, &mut wire, 1 << 20).expect("a decoded packet encodes");
                let again = decode_frame(&mut wire, 1 << 20).expect("re-decodes").expect("whole");
                assert_eq!(again.packet, packet);
            }
            ServerInbound::AdminLine(line) => {
                let _ = AdminCommand::parse(&String::from_utf8_lossy(&line));
            }
        }
    }
});

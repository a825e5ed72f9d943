//! The client side of the packet codec on arbitrary bytes: no panic, and whatever decodes
//! encodes back to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use geardriver::gearman::codec::{ClientCodec, decode_frame, encode_frame};
use geardriver::gearman::packet::Magic;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut codec = ClientCodec::new(1 << 16);
    while let Ok(Some(packet)) = codec.decode(&mut buf) {
        let mut wire = BytesMut::new();
        encode_frame(Magic::Res, &packet, &mut wire, 1 << 20).expect("a decoded packet encodes");
        let again = decode_frame(&mut wire, 1 << 20).expect("re-decodes").expect("whole");
        assert_eq!(again.packet, packet);
    }
});

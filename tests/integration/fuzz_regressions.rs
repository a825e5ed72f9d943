//! Inputs the fuzzers (scripts/fuzz) found to break something, kept as tests named after
//! the crash file. Each one now gets a clear error or a consistent result.

use bytes::BytesMut;
use geardriver::gearman::codec::{ClientCodec, ProtocolError, decode_frame, encode_frame};
use geardriver::gearman::packet::Magic;
use tokio_util::codec::Decoder;

/// Every packet that decodes must encode back to the same packet (the fuzz targets' property).
fn round_trips(magic: Magic, bytes: &[u8]) -> Result<(), ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    while let Some(frame) = decode_frame(&mut buf, 1 << 20)? {
        let mut wire = BytesMut::new();
        encode_frame(magic, &frame.packet, &mut wire, 1 << 20).expect("a decoded packet encodes");
        assert_eq!(
            decode_frame(&mut wire, 1 << 20).unwrap().unwrap().packet,
            frame.packet
        );
    }
    Ok(())
}

/// packet_client crash-e11f8116: JOB_CREATED whose handle holds a NUL in the middle decoded,
/// but could not be encoded again.
#[test]
fn fuzz_packet_client_e11f8116_a_handle_with_an_inner_nul() {
    let input = b"\0RES\0\0\0\x08\0\0\0\x07H:lap\0:1\0RE\0HES\0\0\x08:lap:1\x07";
    let err = ClientCodec::new(1 << 16)
        .decode(&mut BytesMut::from(&input[..]))
        .unwrap_err();
    assert!(
        err.to_string().contains("handle contains a NUL byte"),
        "{err}"
    );
    assert!(round_trips(Magic::Res, input).is_err());
    // A trailing NUL, as gearmand sends on WORK_FAIL, is still fine.
    assert!(round_trips(Magic::Res, b"\0RES\0\0\0\x0e\0\0\0\x07H:vm:7\0").is_ok());
}

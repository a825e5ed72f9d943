//! The packet codec: golden bytes from gearmand's PROTOCOL document, and properties over
//! every packet type (round trip, arbitrary stream splits, garbage, oversized lengths).

use bytes::{Bytes, BytesMut};
use geardriver::gearman::codec::{
    ClientCodec, Frame, ProtocolError, ServerCodec, ServerInbound, ServerOutbound, decode_frame,
    encode_frame,
};
use geardriver::gearman::packet::{Direction, Magic, Packet, PacketType, Priority, Schedule};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

const MAX: usize = 1 << 20;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn encode(magic: Magic, packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(magic, packet, &mut buf, MAX).unwrap();
    buf.to_vec()
}

#[test]
fn golden_bytes_from_the_protocol_document() {
    let b = Bytes::from_static;
    let cases: Vec<(Magic, Packet, &str)> = vec![
        (
            Magic::Req,
            Packet::CanDo {
                function: b(b"reverse"),
            },
            "00 52 45 51 00 00 00 01 00 00 00 07 72 65 76 65 72 73 65",
        ),
        (
            Magic::Req,
            Packet::GrabJob,
            "00 52 45 51 00 00 00 09 00 00 00 00",
        ),
        (
            Magic::Req,
            Packet::PreSleep,
            "00 52 45 51 00 00 00 04 00 00 00 00",
        ),
        (
            Magic::Req,
            Packet::Submit {
                priority: Priority::Normal,
                background: false,
                function: b(b"reverse"),
                unique: Bytes::new(),
                data: b(b"test"),
            },
            "00 52 45 51 00 00 00 07 00 00 00 0d 72 65 76 65 72 73 65 00 00 74 65 73 74",
        ),
        (
            Magic::Res,
            Packet::JobCreated {
                handle: b(b"H:lap:1"),
            },
            "00 52 45 53 00 00 00 08 00 00 00 07 48 3a 6c 61 70 3a 31",
        ),
        (
            Magic::Res,
            Packet::Noop,
            "00 52 45 53 00 00 00 06 00 00 00 00",
        ),
        (
            Magic::Res,
            Packet::JobAssign {
                handle: b(b"H:lap:1"),
                function: b(b"reverse"),
                data: b(b"test"),
            },
            "00 52 45 53 00 00 00 0b 00 00 00 14 48 3a 6c 61 70 3a 31 00 72 65 76 65 72 73 65 00 74 65 73 74",
        ),
        (
            Magic::Req,
            Packet::WorkComplete {
                handle: b(b"H:lap:1"),
                data: b(b"tset"),
            },
            "00 52 45 51 00 00 00 0d 00 00 00 0c 48 3a 6c 61 70 3a 31 00 74 73 65 74",
        ),
        (
            Magic::Res,
            Packet::WorkComplete {
                handle: b(b"H:lap:1"),
                data: b(b"tset"),
            },
            "00 52 45 53 00 00 00 0d 00 00 00 0c 48 3a 6c 61 70 3a 31 00 74 73 65 74",
        ),
    ];
    for (magic, packet, bytes) in cases {
        let wire = hex(bytes);
        assert_eq!(encode(magic, &packet), wire, "encoding {packet:?}");
        let mut buf = BytesMut::from(&wire[..]);
        let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(frame, Frame { magic, packet });
        assert!(buf.is_empty());
    }
}

#[test]
fn gearmands_work_fail_with_a_trailing_nul_decodes_to_the_bare_handle() {
    // What gearmand 1.1 sends a client without exceptions when a worker sent WORK_EXCEPTION.
    let mut buf = BytesMut::from(&b"\0RES\0\0\0\x0e\0\0\0\x07H:vm:7\0"[..]);
    let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
    assert_eq!(
        frame.packet,
        Packet::WorkFail {
            handle: Bytes::from("H:vm:7")
        }
    );
}

// Issue 11, defect 4: npm's `gearman` sends CAN_DO_TIMEOUT's timeout as a 4-byte binary
// integer; it was refused as INVALID_PACKET and the worker dropped. gearmand reads the
// argument with strtol: leading spaces and a sign, digits up to the first other byte, else 0.
#[test]
fn can_do_timeout_is_read_as_gearmand_reads_it() {
    let cases: [(&[u8], u32); 8] = [
        (b"1500", 1500),
        (b" 1500", 1500),
        (b"+1200", 1200),
        (b"1500abc", 1500),
        (b"-5", 0),
        (b"abc", 0),
        (&[0, 0, 7, 0xd0], 0),
        (b"99999999999999999999", u32::MAX),
    ];
    for (timeout, expected) in cases {
        let mut body = b"f\0".to_vec();
        body.extend_from_slice(timeout);
        let mut wire = b"\0REQ\0\0\0\x17".to_vec();
        wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
        wire.extend_from_slice(&body);
        let mut buf = BytesMut::from(&wire[..]);
        let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(
            frame.packet,
            Packet::CanDoTimeout {
                function: Bytes::from("f"),
                timeout_ms: expected
            },
            "{timeout:?}"
        );
    }
}

#[test]
fn every_packet_type_is_numbered_as_in_protocol() {
    assert_eq!(PacketType::ALL.len(), 41);
    for (i, ptype) in PacketType::ALL.iter().enumerate() {
        let number = if i < 4 { i as u32 + 1 } else { i as u32 + 2 };
        assert_eq!(*ptype as u32, number, "{ptype}");
        assert_eq!(PacketType::from_u32(number), Some(*ptype));
    }
    assert_eq!(PacketType::from_u32(5), None);
    assert_eq!(PacketType::from_u32(0), None);
    assert_eq!(PacketType::from_u32(43), None);
}

#[test]
fn layout_mistakes_are_refused_with_their_reason() {
    let decode = |bytes: &[u8]| decode_frame(&mut BytesMut::from(bytes), MAX);
    // JOB_ASSIGN with only two arguments.
    let err = decode(b"\0RES\0\0\0\x0b\0\0\0\x03a\0b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "JOB_ASSIGN packet needs 3 arguments, found 2"
    );
    // NOOP with data.
    let err = decode(b"\0RES\0\0\0\x06\0\0\0\x01x").unwrap_err();
    assert!(matches!(err, ProtocolError::UnexpectedData { .. }), "{err}");
    // WORK_STATUS with a non-numeric numerator.
    let err = decode(b"\0REQ\0\0\0\x0c\0\0\0\x05h\0x\x001").unwrap_err();
    assert!(
        err.to_string()
            .contains("numerator is not a decimal number"),
        "{err}"
    );
    // A request type sent with the response magic.
    let err = decode(b"\0RES\0\0\0\x01\0\0\0\x01f").unwrap_err();
    assert!(matches!(err, ProtocolError::WrongMagic { .. }), "{err}");
    // Type 5 is unused.
    let err = decode(b"\0REQ\0\0\0\x05\0\0\0\0").unwrap_err();
    assert!(matches!(err, ProtocolError::UnknownType(5)), "{err}");
    // Garbage is refused on its first byte.
    let err = decode(b"G").unwrap_err();
    assert!(matches!(err, ProtocolError::BadMagic { .. }), "{err}");
    // Encoding a function name with a NUL would corrupt the stream.
    let bad = Packet::Submit {
        priority: Priority::High,
        background: true,
        function: Bytes::from("a\0b"),
        unique: Bytes::new(),
        data: Bytes::new(),
    };
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = encode_frame(Magic::Req, &bad, &mut buf, MAX).unwrap_err();
    assert!(
        err.to_string().contains("function contains a NUL byte"),
        "{err}"
    );
    assert_eq!(
        &buf[..],
        b"keep",
        "a failed encode leaves the buffer as it was"
    );
    // So would a direction mismatch.
    assert!(encode_frame(Magic::Res, &Packet::GrabJob, &mut buf, MAX).is_err());
}

#[test]
fn an_oversized_length_is_refused_before_allocating() {
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(b"\0REQ\0\0\0\x07\x7f\xff\xff\xff");
    let before = buf.capacity();
    let err = decode_frame(&mut buf, MAX).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::TooLarge {
                size: 0x7fff_ffff,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        buf.capacity(),
        before,
        "nothing was reserved for the announced size"
    );
    // The same on the encode side.
    let big = Packet::EchoReq {
        data: Bytes::from(vec![0u8; MAX + 1]),
    };
    assert!(matches!(
        encode_frame(Magic::Req, &big, &mut BytesMut::new(), MAX),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn the_server_codec_tells_admin_lines_from_packets() {
    let mut codec = ServerCodec::new(MAX, 64);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(b"status\r\n");
    buf.extend_from_slice(&encode(
        Magic::Req,
        &Packet::EchoReq {
            data: Bytes::from("hi"),
        },
    ));
    buf.extend_from_slice(b"workers\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerInbound::AdminLine(Bytes::from("status")))
    );
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerInbound::Packet(Packet::EchoReq {
            data: Bytes::from("hi")
        }))
    );
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerInbound::AdminLine(Bytes::from("workers")))
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    // A line that never ends is cut off at the cap.
    buf.extend_from_slice(&[b'x'; 65]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtocolError::LineTooLong { max: 64 })
    ));
    // Responses are refused on a server connection, requests on a client connection.
    let mut buf = BytesMut::from(&encode(Magic::Res, &Packet::Noop)[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtocolError::WrongMagic { .. })
    ));
    let mut buf = BytesMut::from(&encode(Magic::Req, &Packet::GrabJob)[..]);
    assert!(matches!(
        ClientCodec::default().decode(&mut buf),
        Err(ProtocolError::WrongMagic { .. })
    ));
    // The server writes responses and raw text.
    let mut out = BytesMut::new();
    codec
        .encode(ServerOutbound::Packet(Packet::NoJob), &mut out)
        .unwrap();
    codec
        .encode(ServerOutbound::Text(Bytes::from("OK\r\n")), &mut out)
        .unwrap();
    assert_eq!(&out[..], b"\0RES\0\0\0\x0a\0\0\0\0OK\r\n");
}

// ---- properties -------------------------------------------------------------------------

/// An argument that may be followed by another: no NUL.
fn word() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(1u8..=255, 0..12).prop_map(Bytes::from)
}

/// A last argument: anything.
fn blob() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::High),
        Just(Priority::Normal),
        Just(Priority::Low)
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    let simple = prop_oneof![
        Just(Packet::ResetAbilities),
        Just(Packet::PreSleep),
        Just(Packet::Noop),
        Just(Packet::GrabJob),
        Just(Packet::NoJob),
        Just(Packet::AllYours),
        Just(Packet::GrabJobUniq),
        Just(Packet::GrabJobAll),
        blob().prop_map(|function| Packet::CanDo { function }),
        blob().prop_map(|function| Packet::CantDo { function }),
        word().prop_map(|handle| Packet::JobCreated { handle }),
        word().prop_map(|handle| Packet::WorkFail { handle }),
        word().prop_map(|handle| Packet::GetStatus { handle }),
        blob().prop_map(|data| Packet::EchoReq { data }),
        blob().prop_map(|data| Packet::EchoRes { data }),
        blob().prop_map(|id| Packet::SetClientId { id }),
        blob().prop_map(|option| Packet::OptionReq { option }),
        blob().prop_map(|option| Packet::OptionRes { option }),
        blob().prop_map(|unique| Packet::GetStatusUnique { unique }),
    ];
    let with_args = prop_oneof![
        (priority(), any::<bool>(), word(), word(), blob()).prop_map(
            |(priority, background, function, unique, data)| {
                Packet::Submit {
                    priority,
                    background,
                    function,
                    unique,
                    data,
                }
            }
        ),
        (word(), word(), blob()).prop_map(|(handle, function, data)| Packet::JobAssign {
            handle,
            function,
            data
        }),
        (word(), any::<u32>(), any::<u32>()).prop_map(|(handle, numerator, denominator)| {
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            }
        }),
        (word(), blob()).prop_map(|(handle, data)| Packet::WorkComplete { handle, data }),
        (word(), blob()).prop_map(|(handle, data)| Packet::WorkException { handle, data }),
        (word(), blob()).prop_map(|(handle, data)| Packet::WorkData { handle, data }),
        (word(), blob()).prop_map(|(handle, data)| Packet::WorkWarning { handle, data }),
        (word(), blob()).prop_map(|(code, text)| Packet::Error { code, text }),
        (
            word(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(handle, known, running, numerator, denominator)| {
                Packet::StatusRes {
                    handle,
                    known,
                    running,
                    numerator,
                    denominator,
                }
            }),
        (word(), any::<u32>()).prop_map(|(function, timeout_ms)| Packet::CanDoTimeout {
            function,
            timeout_ms
        }),
        (word(), word(), word(), blob()).prop_map(|(handle, function, unique, data)| {
            Packet::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            }
        }),
        (
            word(),
            word(),
            [word(), word(), word(), word(), word()],
            blob()
        )
            .prop_map(
                |(function, unique, [minute, hour, day_of_month, month, day_of_week], data)| {
                    Packet::SubmitJobSched {
                        function,
                        unique,
                        schedule: Box::new(Schedule {
                            minute,
                            hour,
                            day_of_month,
                            month,
                            day_of_week,
                        }),
                        data,
                    }
                }
            ),
        (word(), word(), any::<u64>(), blob()).prop_map(|(function, unique, epoch, data)| {
            Packet::SubmitJobEpoch {
                function,
                unique,
                epoch,
                data,
            }
        }),
        (any::<bool>(), word(), word(), word(), blob()).prop_map(
            |(background, function, unique, reducer, data)| {
                Packet::SubmitReduceJob {
                    background,
                    function,
                    unique,
                    reducer,
                    data,
                }
            }
        ),
        (word(), word(), word(), word(), blob()).prop_map(
            |(handle, function, unique, reducer, data)| {
                Packet::JobAssignAll {
                    handle,
                    function,
                    unique,
                    reducer,
                    data,
                }
            }
        ),
        (
            word(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(unique, known, running, numerator, denominator, waiting)| {
                    Packet::StatusResUnique {
                        unique,
                        known,
                        running,
                        numerator,
                        denominator,
                        waiting,
                    }
                }
            ),
    ];
    prop_oneof![simple, with_args]
}

/// A packet with a magic its type allows.
fn frame() -> impl Strategy<Value = Frame> {
    (packet(), any::<bool>()).prop_map(|(packet, pick_request)| {
        let magic = match packet.packet_type().direction() {
            Direction::Request => Magic::Req,
            Direction::Response => Magic::Res,
            Direction::Both if pick_request => Magic::Req,
            Direction::Both => Magic::Res,
        };
        Frame { magic, packet }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_the_identity(frame in frame()) {
        let wire = encode(frame.magic, &frame.packet);
        let mut buf = BytesMut::from(&wire[..]);
        prop_assert_eq!(decode_frame(&mut buf, MAX).unwrap(), Some(frame));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_stream_split_anywhere_decodes_the_same(
        frames in proptest::collection::vec(frame(), 1..8),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(|f| encode(f.magic, &f.packet)).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buf.extend_from_slice(&wire[from..cut]);
            from = cut;
            while let Some(frame) = decode_frame(&mut buf, MAX).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, 64) {}
        let mut buf = BytesMut::from(&bytes[..]);
        let mut server = ServerCodec::new(64, 32);
        while let Ok(Some(_)) = server.decode(&mut buf) {}
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = ClientCodec::new(64).decode(&mut buf) {}
    }

    #[test]
    fn a_valid_header_with_random_body_never_panics(
        ptype in proptest::sample::select(PacketType::ALL),
        body in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let magic = if ptype.direction() == Direction::Response { b"\0RES" } else { b"\0REQ" };
        let mut buf = BytesMut::new();
        buf.extend_from_slice(magic);
        buf.extend_from_slice(&(ptype as u32).to_be_bytes());
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&body);
        let _ = decode_frame(&mut buf, MAX);
    }
}

//! Tests of framed payloads: golden bytes, streaming without copies, truncation, limits,
//! the trailer field block, and the encoders.

use super::*;

const L: Limits = Limits::DEFAULT;

fn grpc_trailers() -> Vec<Header> {
    vec![
        Header::new("grpc-status", "0"),
        Header::new("grpc-message", "ok"),
    ]
}

/// Decodes everything pushed so far: (frames, result of the last call).
fn drain(d: &mut PayloadDecoder) -> (Vec<PayloadFrame>, Result<(), Malformed>) {
    let mut frames = Vec::new();
    loop {
        match d.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, Ok(())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

fn frame(ty: u64, body: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::new(ty, body.len() as u64).as_slice().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn golden_bytes_of_a_grpc_reply() {
    let mut stream = frame(frame_type::DATA, b"\x00\x00\x00\x00\x02hi");
    stream.extend_from_slice(&trailers_frame(&grpc_trailers(), &L).unwrap());
    assert_eq!(
        stream,
        b"\x00\x07\x00\x00\x00\x00\x02hi\
          \x01\x22\
          \x13\x0e\x00\x0bgrpc-status0\
          \x13\x10\x00\x0cgrpc-messageok"
            .to_vec()
    );
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from(stream));
    let (frames, end) = drain(&mut d);
    assert_eq!(end, Ok(()));
    assert_eq!(
        frames,
        vec![
            PayloadFrame::Data(Bytes::from_static(b"\x00\x00\x00\x00\x02hi")),
            PayloadFrame::Trailers(grpc_trailers()),
        ]
    );
    assert!(d.has_trailers());
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn data_comes_out_as_it_arrives_without_copies() {
    let body = Bytes::from(vec![7u8; 1000]);
    let mut stream = frame(frame_type::DATA, &body);
    let second = stream.split_off(300);
    let first = Bytes::from(stream);
    let second = Bytes::from(second);
    let mut d = PayloadDecoder::new(&L);
    d.push(first.clone());
    let (frames, _) = drain(&mut d);
    // The header (3 bytes) is consumed; the rest of the chunk comes out at once.
    assert_eq!(frames, vec![PayloadFrame::Data(first.slice(3..))]);
    let PayloadFrame::Data(piece) = &frames[0] else {
        unreachable!()
    };
    assert_eq!(piece.as_ptr(), first[3..].as_ptr(), "a slice, not a copy");
    assert_eq!(
        d.finish(),
        Err(Malformed::TruncatedPayload {
            inside: "a DATA frame"
        })
    );
    d.push(second.clone());
    let (frames, _) = drain(&mut d);
    assert_eq!(frames, vec![PayloadFrame::Data(second)]);
    assert_eq!(d.finish(), Ok(()));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn an_empty_payload_and_empty_frames_are_fine() {
    let d = PayloadDecoder::new(&L);
    assert_eq!(d.finish(), Ok(()));
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from_static(b"\x00\x00\x00\x00\x01\x00"));
    let (frames, end) = drain(&mut d);
    assert_eq!(end, Ok(()));
    assert_eq!(frames, vec![PayloadFrame::Trailers(vec![])]);
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn every_cut_is_incomplete_and_finish_tells_truncation() {
    let mut stream = frame(frame_type::DATA, b"abc");
    stream.extend_from_slice(&frame(0x21, b"future"));
    stream.extend_from_slice(&trailers_frame(&grpc_trailers(), &L).unwrap());
    let boundaries = [0, 5, 5 + 8, stream.len()];
    for cut in 0..=stream.len() {
        let mut d = PayloadDecoder::new(&L);
        d.push(Bytes::copy_from_slice(&stream[..cut]));
        let (frames, end) = drain(&mut d);
        assert_eq!(end, Ok(()), "cut {cut}");
        let data: Vec<u8> = frames
            .iter()
            .filter_map(|f| match f {
                PayloadFrame::Data(b) => Some(b.to_vec()),
                PayloadFrame::Trailers(_) => None,
            })
            .flatten()
            .collect();
        assert!(b"abc".starts_with(&data), "cut {cut}: {data:?}");
        assert_eq!(
            d.finish().is_ok(),
            boundaries.contains(&cut),
            "cut {cut}: {:?}",
            d.finish()
        );
    }
}

#[test]
fn truncation_names_where_it_happened() {
    for (bytes, inside) in [
        (&b"\x40"[..], "a frame header"),
        (b"\x00", "a frame header"),
        (b"\x00\x05ab", "a DATA frame"),
        (b"\x21\x05ab", "an unknown frame"),
        (b"\x01\x05\x13\x03", "the TRAILERS frame"),
    ] {
        let mut d = PayloadDecoder::new(&L);
        d.push(Bytes::from_static(bytes));
        assert!(drain(&mut d).1.is_ok());
        assert_eq!(
            d.finish(),
            Err(Malformed::TruncatedPayload { inside }),
            "{bytes:?}"
        );
    }
    assert_eq!(
        Malformed::TruncatedPayload {
            inside: "a DATA frame"
        }
        .to_string(),
        "the framed payload ended inside a DATA frame: the response is truncated"
    );
}

#[test]
fn oversized_frames_are_rejected_from_their_header() {
    let mut d = PayloadDecoder::new(&L);
    // DATA declaring 1 MiB + 1: rejected before a byte of it arrives.
    d.push(Bytes::from_static(b"\x00\x80\x10\x00\x01"));
    let err = d.next_frame().unwrap_err();
    assert_eq!(
        err,
        Malformed::PayloadFrameTooLarge {
            frame: FrameId {
                ty: 0,
                name: "DATA"
            },
            len: 1024 * 1024 + 1,
            limit: 1024 * 1024
        }
    );
    assert_eq!(
        err.to_string(),
        "payload frame 0x00 (DATA) declares 1048577 bytes, over the 1048576-byte limit"
    );
    assert_eq!(err.label(), "payload_frame_too_large");
    // The decoder stays failed.
    d.push(Bytes::from_static(b"\x00\x00"));
    assert_eq!(d.next_frame(), Err(err.clone()));
    assert_eq!(d.finish(), Err(err));

    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from_static(b"\x01\x80\x00\x40\x01"));
    assert!(matches!(
        d.next_frame(),
        Err(Malformed::PayloadFrameTooLarge { limit: 16384, .. })
    ));
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from_static(&[0xff; 16]));
    assert!(matches!(
        d.next_frame(),
        Err(Malformed::PayloadFrameTooLarge {
            frame: FrameId {
                name: "unknown",
                ..
            },
            ..
        })
    ));
}

#[test]
fn nothing_may_follow_the_trailers() {
    let mut stream = trailers_frame(&grpc_trailers(), &L).unwrap().to_vec();
    stream.extend_from_slice(b"\x00\x01x");
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from(stream));
    let (frames, end) = drain(&mut d);
    assert_eq!(frames, vec![PayloadFrame::Trailers(grpc_trailers())]);
    assert_eq!(end, Err(Malformed::FrameAfterTrailers));
    // A second TRAILERS frame is no different.
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from_static(b"\x01\x00\x01\x00"));
    let (_, end) = drain(&mut d);
    assert_eq!(end.unwrap_err().label(), "frame_after_trailers");
}

#[test]
fn unknown_frames_are_skipped_even_when_split() {
    let mut stream = frame(0x3f, &[9; 40]);
    stream.extend_from_slice(&frame(0x4000, b""));
    stream.extend_from_slice(&frame(frame_type::DATA, b"ok"));
    let mut d = PayloadDecoder::new(&L);
    let mut data = Vec::new();
    for b in stream {
        d.push(Bytes::copy_from_slice(&[b]));
        let (frames, end) = drain(&mut d);
        end.unwrap();
        for f in frames {
            let PayloadFrame::Data(b) = f else { panic!() };
            data.extend_from_slice(&b);
        }
    }
    assert_eq!(data, b"ok");
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn trailer_blocks_follow_the_field_rules() {
    let bad = |block: &[u8]| {
        let mut d = PayloadDecoder::new(&L);
        d.push(Bytes::from(frame(frame_type::TRAILERS, block)));
        match drain(&mut d).1 {
            Err(Malformed::InvalidTrailers(inner)) => *inner,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(bad(b"\x13\x02\x2ax").label(), "trailing_bytes");
    assert_eq!(bad(b"\x13\x04\x00\x01Xv").label(), "invalid_value");
    assert_eq!(bad(b"\x13\x09").label(), "field_overrun");
    assert_eq!(bad(b"\x13").label(), "truncated_field_header");
    assert_eq!(bad(b"\x13\x04\x00\x01a\r").label(), "invalid_value");
    let many: Vec<u8> = std::iter::repeat_n(&b"\x13\x01\x2a"[..], 129)
        .flatten()
        .copied()
        .collect();
    assert_eq!(bad(&many).label(), "too_many_headers");
    let e = Malformed::InvalidTrailers(Box::new(Malformed::TooManyHeaders { limit: 128 }));
    assert_eq!(e.to_string(), "TRAILERS frame: more than 128 HTTP headers");
    assert_eq!(e.label(), "invalid_trailers");

    // Unknown fields in the block are skipped; static-table names decode.
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::from(frame(
        frame_type::TRAILERS,
        b"\x30\x02zz\x13\x01\x2a\x13\x03\x00\x01x",
    )));
    let (frames, end) = drain(&mut d);
    end.unwrap();
    assert_eq!(
        frames,
        vec![PayloadFrame::Trailers(vec![
            Header::new("accept", "*/*"),
            Header::new("x", ""),
        ])]
    );
}

#[test]
fn data_frames_split_big_chunks_without_copying() {
    let mut limits = L;
    limits.max_payload_frame = 4;
    let data = Bytes::from_static(b"0123456789");
    let frames: Vec<_> = DataFrames::new(data.clone(), &limits).unwrap().collect();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].0.as_slice(), &[0x00, 0x04]);
    assert_eq!(frames[2].0.as_slice(), &[0x00, 0x02]);
    assert_eq!(frames[1].1, "4567");
    assert_eq!(frames[1].1.as_ptr(), data[4..].as_ptr());
    assert_eq!(DataFrames::new(Bytes::new(), &limits).unwrap().count(), 0);
    limits.max_payload_frame = 0;
    assert!(DataFrames::new(data, &limits).is_err());
    assert!(DataFrames::new(Bytes::new(), &limits).is_ok());

    assert_eq!(
        FrameHeader::data(300, &L).unwrap().as_slice(),
        &[0x00, 0x41, 0x2c]
    );
    assert_eq!(
        FrameHeader::data(300, &L).unwrap().to_bytes(),
        &[0x00, 0x41, 0x2c][..]
    );
    assert!(FrameHeader::data(L.max_payload_frame + 1, &L).is_err());
}

#[test]
fn trailer_encoder_refuses_what_the_decoder_rejects() {
    assert!(trailers_frame(&[Header::new("Grpc-Status", "0")], &L).is_err());
    assert!(trailers_frame(&[Header::new("x", "a\nb")], &L).is_err());
    assert_eq!(
        trailers_frame(&vec![Header::new("x", "1"); 129], &L),
        Err(EncodeError::Invalid(Malformed::TooManyHeaders {
            limit: 128
        }))
    );
    let big = vec![Header::new("x", "v".repeat(8000)); 3];
    assert!(matches!(
        trailers_frame(&big, &L),
        Err(EncodeError::Invalid(Malformed::PayloadFrameTooLarge {
            limit: 16384,
            ..
        }))
    ));
    let mut small = [0u8; 4];
    let mut out: &mut [u8] = &mut small;
    assert!(matches!(
        encode_trailers(&mut out, &grpc_trailers(), &L),
        Err(EncodeError::BufferTooSmall { .. })
    ));
    assert_eq!(small, [0; 4], "nothing written");
    assert_eq!(trailers_frame(&[], &L).unwrap(), &b"\x01\x00"[..]);
}

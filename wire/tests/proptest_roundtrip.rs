//! Property tests: round trips over arbitrary envelopes, framing agreement, payload
//! preservation, incompleteness of every prefix, encoder/decoder agreement on limits, and
//! no panics on arbitrary or mutated input. The same for framed payloads (SPEC.md §6.3):
//! arbitrary frame sequences split at arbitrary points decode to what was encoded, every
//! truncation is incomplete and never malformed, and arbitrary bytes never panic.
#![allow(clippy::unwrap_used)] // test code: clippy.toml allows unwrap in tests

use aimux_wire::fuzz::{PayloadVerdict, decode_any, decode_payload};
use aimux_wire::{
    DataFrames, DecodeError, FrameHeader, Header, HttpRequestHead, HttpResponseHead, Intent,
    IntentFlags, Limits, Malformed, Outcome, PayloadDecoder, PayloadFrame, Protocol,
    RequestEnvelope, RequestId, RequestKind, ResponseEnvelope, TraceContext, encode_trailers,
    envelope_len, table, varint,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;

const L: Limits = Limits::DEFAULT;

fn spiffe_id() -> impl Strategy<Value = String> {
    (
        "[a-z0-9._-]{1,20}",
        prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", 0..4),
    )
        .prop_map(|(domain, segs)| {
            let mut s = format!("spiffe://{domain}");
            for seg in segs {
                s.push('/');
                s.push_str(&seg);
            }
            s
        })
}

fn intent() -> impl Strategy<Value = Intent> {
    (
        prop::sample::select(Protocol::ALL.to_vec()),
        ".{0,24}",
        ".{0,24}",
        0..=varint::MAX,
    )
        .prop_map(|(protocol, operation, target, flags)| Intent {
            protocol,
            operation,
            target,
            flags: IntentFlags(flags),
        })
}

fn trace() -> impl Strategy<Value = TraceContext> {
    (
        0u8..0xff,
        any::<[u8; 16]>().prop_filter("non-zero", |t| *t != [0; 16]),
        any::<[u8; 8]>().prop_filter("non-zero", |p| *p != [0; 8]),
        any::<u8>(),
        prop::option::of("[ -~]{1,40}"),
    )
        .prop_map(
            |(version, trace_id, parent_id, flags, tracestate)| TraceContext {
                version,
                trace_id,
                parent_id,
                flags,
                tracestate,
            },
        )
}

fn header() -> impl Strategy<Value = Header> {
    let static_entry = (1..=table::STATIC_TABLE.len() as u64).prop_flat_map(|i| {
        let (name, value) = table::entry(i).unwrap();
        let value: BoxedStrategy<Vec<u8>> = match value {
            Some(v) => Just(v.as_bytes().to_vec()).boxed(),
            None => value_bytes().boxed(),
        };
        value.prop_map(move |v| Header::new(name, v))
    });
    let literal = ("[a-z0-9!#$%&'*+.^_`|~-]{1,20}", value_bytes())
        .prop_map(|(name, value)| Header::new(name, value));
    prop_oneof![static_entry, literal]
}

/// Any bytes but NUL, CR and LF.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("no NUL/CR/LF", |b| ![0, 13, 10].contains(b)),
        0..40,
    )
}

fn request_head() -> impl Strategy<Value = HttpRequestHead> {
    let method = prop_oneof![
        prop::sample::select(table::METHODS.to_vec()).prop_map(String::from),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
    ];
    (
        method,
        "[A-Za-z0-9.:\\[\\]_-]{0,30}",
        prop_oneof![Just("*".to_owned()), "/[!-~]{0,40}"],
        prop::collection::vec(header(), 0..12),
    )
        .prop_map(|(method, authority, path, headers)| HttpRequestHead {
            method: method.into(),
            authority,
            path,
            headers,
        })
}

fn request() -> impl Strategy<Value = RequestEnvelope> {
    (
        prop::option::of(spiffe_id()),
        prop::option::of(intent()),
        "[^\\s\\p{C}]{1,30}",
        prop::option::of(trace()),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..=64)),
        prop::option::of(request_head()),
        any::<bool>(),
    )
        .prop_map(
            |(identity, intent, destination, trace, rid, http, te)| RequestEnvelope {
                kind: if http.is_some() {
                    RequestKind::Http
                } else {
                    RequestKind::Stream
                },
                identity,
                intent,
                destination,
                trace,
                request_id: rid.and_then(RequestId::new),
                // HTTP requests only (SPEC.md §5.9).
                te_trailers: te && http.is_some(),
                http,
            },
        )
}

fn response() -> impl Strategy<Value = ResponseEnvelope> {
    let outcome = prop_oneof![
        prop::sample::select(Outcome::KNOWN.to_vec()),
        (10..=varint::MAX).prop_map(Outcome::Unknown),
    ];
    let head = (100u16..=599, prop::collection::vec(header(), 0..12))
        .prop_map(|(status, headers)| HttpResponseHead { status, headers });
    (outcome, ".{0,60}", prop::option::of(head), any::<bool>()).prop_map(
        |(outcome, reason, http, framed_payload)| ResponseEnvelope {
            outcome,
            reason,
            http,
            framed_payload,
        },
    )
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (0usize..400, 0usize..12, 0usize..80, 0usize..12, 0usize..64).prop_map(
        |(block, fields, value, headers, frame)| {
            let mut l = Limits::default();
            l.max_header_block = block;
            l.max_fields = fields;
            l.max_field_value = value;
            l.max_http_headers = headers;
            l.max_payload_frame = frame;
            l
        },
    )
}

/// One frame of a framed payload, as a sender would write it.
#[derive(Debug, Clone)]
enum Frame {
    Data(Vec<u8>),
    /// An unknown frame type (skipped by receivers) with its bytes.
    Unknown(u64, Vec<u8>),
}

fn frames() -> impl Strategy<Value = (Vec<Frame>, Option<Vec<Header>>)> {
    let frame = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Data),
        1 => (2..=varint::MAX, prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, b)| Frame::Unknown(t, b)),
    ];
    (
        prop::collection::vec(frame, 0..8),
        prop::option::of(prop::collection::vec(header(), 0..10)),
    )
}

/// Encodes a frame sequence; returns the bytes, the offsets where frames end, and the body.
fn encode_frames(frames: &[Frame], trailers: Option<&[Header]>) -> (Vec<u8>, Vec<usize>, Vec<u8>) {
    let mut out = Vec::new();
    let mut ends = vec![0];
    let mut body = Vec::new();
    for f in frames {
        match f {
            Frame::Data(data) => {
                out.extend_from_slice(FrameHeader::data(data.len(), &L).unwrap().as_slice());
                out.extend_from_slice(data);
                body.extend_from_slice(data);
            }
            Frame::Unknown(t, bytes) => {
                varint::encode(&mut out, *t).unwrap();
                varint::encode(&mut out, bytes.len() as u64).unwrap();
                out.extend_from_slice(bytes);
            }
        }
        ends.push(out.len());
    }
    if let Some(t) = trailers {
        encode_trailers(&mut out, t, &L).unwrap();
        ends.push(out.len());
    }
    (out, ends, body)
}

/// Pushes `bytes` in pieces ending at `cuts` and decodes: (body, trailers, error).
fn decode_split(
    bytes: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> (
    Vec<u8>,
    Option<Vec<Header>>,
    Option<Malformed>,
    PayloadDecoder,
) {
    let mut d = PayloadDecoder::new(limits);
    let mut body = Vec::new();
    let mut trailers = None;
    let mut start = 0;
    for &cut in cuts.iter().chain(&[bytes.len()]) {
        let cut = cut.clamp(start, bytes.len());
        d.push(Bytes::copy_from_slice(&bytes[start..cut]));
        start = cut;
        loop {
            match d.next_frame() {
                Ok(Some(PayloadFrame::Data(b))) => body.extend_from_slice(&b),
                Ok(Some(PayloadFrame::Trailers(t))) => trailers = Some(t),
                Ok(None) => break,
                Err(e) => return (body, trailers, Some(e), d),
            }
        }
    }
    (body, trailers, None, d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_round_trips(env in request(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let bytes = env.to_bytes(&L).unwrap();
        prop_assert_eq!(env.encoded_len(&L).unwrap(), bytes.len());
        prop_assert_eq!(envelope_len(&bytes, &L).unwrap(), bytes.len());
        prop_assert_eq!(RequestEnvelope::decode_slice(&bytes, &L).unwrap(), (env.clone(), bytes.len()));

        let mut stream = BytesMut::from(&bytes[..]);
        stream.extend_from_slice(&payload);
        prop_assert_eq!(envelope_len(&stream, &L).unwrap(), bytes.len());
        prop_assert_eq!(RequestEnvelope::decode(&mut stream, &L).unwrap(), env);
        prop_assert_eq!(&stream[..], &payload[..]);
    }

    #[test]
    fn response_round_trips(env in response(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let bytes = env.to_bytes(&L).unwrap();
        prop_assert_eq!(env.encoded_len(&L).unwrap(), bytes.len());
        prop_assert_eq!(envelope_len(&bytes, &L).unwrap(), bytes.len());
        prop_assert_eq!(ResponseEnvelope::decode_slice(&bytes, &L).unwrap(), (env.clone(), bytes.len()));

        let mut stream = BytesMut::from(&bytes[..]);
        stream.extend_from_slice(&payload);
        prop_assert_eq!(ResponseEnvelope::decode(&mut stream, &L).unwrap(), env);
        prop_assert_eq!(&stream[..], &payload[..]);
    }

    #[test]
    fn every_strict_prefix_is_incomplete(env in request(), resp in response(), cut in any::<Index>()) {
        let req = env.to_bytes(&L).unwrap();
        for n in 0..req.len() {
            let mut prefix = &req[..n];
            let r = RequestEnvelope::decode(&mut prefix, &L);
            prop_assert!(matches!(r, Err(DecodeError::Incomplete { .. })), "prefix {}: {:?}", n, r);
            prop_assert_eq!(prefix.len(), n, "incomplete consumed input");
        }
        let resp = resp.to_bytes(&L).unwrap();
        let n = cut.index(resp.len());
        let r = ResponseEnvelope::decode_slice(&resp[..n], &L);
        prop_assert!(r.is_err_and(|e| e.is_incomplete()));
    }

    #[test]
    fn encoder_and_decoder_agree_on_limits(env in request(), resp in response(), limits in small_limits()) {
        // Limits never change the bytes, only whether they are acceptable: the encoder must
        // refuse exactly what the decoder rejects.
        let bytes = env.to_bytes(&L).unwrap();
        let encodes = env.to_bytes(&limits).is_ok();
        let decodes = RequestEnvelope::decode_slice(&bytes, &limits);
        prop_assert_eq!(encodes, decodes.is_ok(), "{:?}", decodes);

        let bytes = resp.to_bytes(&L).unwrap();
        let encodes = resp.to_bytes(&limits).is_ok();
        let decodes = ResponseEnvelope::decode_slice(&bytes, &limits);
        prop_assert_eq!(encodes, decodes.is_ok(), "{:?}", decodes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        decode_any(&data);
        // Also with a valid preface in front, to get past the magic check.
        let mut framed = vec![0xa1, 0x4d, 0x58, 0x01];
        framed.extend_from_slice(&data);
        decode_any(&framed);
    }

    #[test]
    fn mutated_envelopes_never_panic(
        env in request(),
        resp in response(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        for bytes in [env.to_bytes(&L).unwrap(), resp.to_bytes(&L).unwrap()] {
            let mut m = bytes.to_vec();
            for (i, b) in &edits {
                let i = i.index(m.len());
                m[i] = *b;
            }
            decode_any(&m);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn framed_payloads_round_trip_however_they_are_split(
        (frames, trailers) in frames(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (bytes, _, body) = encode_frames(&frames, trailers.as_deref());
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let (got, got_trailers, err, d) = decode_split(&bytes, &cuts, &L);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, body);
        prop_assert_eq!(got_trailers, trailers);
        prop_assert_eq!(d.finish(), Ok(()));
        let complete = matches!(decode_payload(&bytes), PayloadVerdict::Complete { .. });
        prop_assert!(complete);
    }

    #[test]
    fn every_truncation_of_a_framed_payload_is_incomplete_never_malformed(
        (frames, trailers) in frames(),
    ) {
        let (bytes, ends, body) = encode_frames(&frames, trailers.as_deref());
        for cut in 0..bytes.len() {
            let (got, _, err, d) = decode_split(&bytes[..cut], &[], &L);
            prop_assert_eq!(err, None, "cut {}", cut);
            prop_assert!(body.starts_with(&got), "cut {}: body is not a prefix", cut);
            let end = d.finish();
            if ends.contains(&cut) {
                prop_assert_eq!(end, Ok(()), "cut {} is a frame boundary", cut);
            } else {
                prop_assert!(
                    matches!(end, Err(Malformed::TruncatedPayload { .. })),
                    "cut {}: {:?}", cut, end
                );
            }
        }
    }

    #[test]
    fn data_frames_split_and_rejoin_any_chunk(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        max in 1usize..700,
    ) {
        let mut limits = L;
        limits.max_payload_frame = max;
        let mut bytes = Vec::new();
        for (header, piece) in DataFrames::new(Bytes::from(data.clone()), &limits).unwrap() {
            prop_assert!(!piece.is_empty() && piece.len() <= max);
            bytes.extend_from_slice(header.as_slice());
            bytes.extend_from_slice(&piece);
        }
        let (got, trailers, err, d) = decode_split(&bytes, &[], &limits);
        prop_assert_eq!((got, trailers, err), (data, None, None));
        prop_assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn payload_encoder_and_decoder_agree_on_limits(
        trailers in prop::collection::vec(header(), 0..10),
        data_len in 0usize..100,
        limits in small_limits(),
    ) {
        // TRAILERS: the encoder refuses exactly what the decoder rejects.
        let mut bytes = Vec::new();
        encode_trailers(&mut bytes, &trailers, &L).unwrap();
        let encodes = encode_trailers(&mut Vec::new(), &trailers, &limits).is_ok();
        let (_, _, err, _) = decode_split(&bytes, &[], &limits);
        prop_assert_eq!(encodes, err.is_none(), "{:?}", err);
        // DATA: a frame header is refused exactly when the decoder would reject it.
        let header = FrameHeader::data(data_len, &L).unwrap();
        let mut frame = header.as_slice().to_vec();
        frame.resize(frame.len() + data_len, b'x');
        let (_, _, err, _) = decode_split(&frame, &[], &limits);
        prop_assert_eq!(FrameHeader::data(data_len, &limits).is_ok(), err.is_none());
    }

    #[test]
    fn arbitrary_payload_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_payload(&data);
    }

    #[test]
    fn mutated_payloads_never_panic(
        (frames, trailers) in frames(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let (mut bytes, _, _) = encode_frames(&frames, trailers.as_deref());
        if !bytes.is_empty() {
            for (i, b) in &edits {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
        }
        decode_payload(&bytes);
    }
}

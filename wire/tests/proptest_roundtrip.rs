//! Property tests: round trips over arbitrary envelopes, framing agreement, payload
//! preservation, incompleteness of every prefix, encoder/decoder agreement on limits, and
//! no panics on arbitrary or mutated input.
#![allow(clippy::unwrap_used)] // test code: clippy.toml allows unwrap in tests

use aimux_wire::{
    DecodeError, Header, HttpRequestHead, HttpResponseHead, Intent, IntentFlags, Limits, Outcome,
    Protocol, RequestEnvelope, RequestId, RequestKind, ResponseEnvelope, TraceContext,
    envelope_len, fuzz::decode_any, table, varint,
};
use bytes::BytesMut;
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
    )
        .prop_map(
            |(identity, intent, destination, trace, rid, http)| RequestEnvelope {
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
    (outcome, ".{0,60}", prop::option::of(head)).prop_map(|(outcome, reason, http)| {
        ResponseEnvelope {
            outcome,
            reason,
            http,
        }
    })
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (0usize..400, 0usize..12, 0usize..80, 0usize..12).prop_map(|(block, fields, value, headers)| {
        let mut l = Limits::default();
        l.max_header_block = block;
        l.max_fields = fields;
        l.max_field_value = value;
        l.max_http_headers = headers;
        l
    })
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

//! Runs the fuzz targets' entry points, `aimux_wire::fuzz::decode_any` (envelopes) and
//! `aimux_wire::fuzz::decode_payload` (framed payloads), over every committed vector, every
//! strict prefix of each, and single-byte mutations of the small ones, so the fuzz targets
//! keep compiling and their oracles keep holding without nightly.
#![allow(clippy::unwrap_used)] // test code: clippy.toml allows unwrap in tests

mod common;

use aimux_wire::fuzz::{PayloadVerdict, Verdict, decode_any, decode_payload};

#[test]
fn oracle_holds_on_vectors_and_their_prefixes() {
    let vectors = common::load_vectors();
    assert!(!vectors.is_empty());
    for (name, bytes, json) in &vectors {
        if json["direction"] == "payload" {
            check_payload(name, bytes, json);
            continue;
        }
        if json["envelope"]["framed_payload"] == true {
            let len = json["envelope_len"].as_u64().unwrap() as usize;
            let verdict = decode_payload(&bytes[len..]);
            assert!(
                matches!(verdict, PayloadVerdict::Complete { .. }),
                "{name}: {verdict:?}"
            );
        }
        let verdict = decode_any(bytes);
        if json["valid"] == true {
            let len = json["envelope_len"].as_u64().unwrap() as usize;
            let expected = match json["direction"].as_str() {
                Some("request") => Verdict::Request(len),
                _ => Verdict::Response(len),
            };
            assert_eq!(verdict, expected, "{name}");
        } else if json["error"] == "incomplete" {
            assert_eq!(verdict, Verdict::Incomplete, "{name}");
        } else if json["reason"] != "wrong_kind" {
            assert_eq!(verdict, Verdict::Malformed, "{name}");
        }
        for n in 0..bytes.len() {
            let v = decode_any(&bytes[..n]);
            if json["valid"] == true && n < json["envelope_len"].as_u64().unwrap() as usize {
                assert_eq!(v, Verdict::Incomplete, "{name}: prefix {n}");
            }
        }
    }
}

/// A framed-payload vector: the verdict matches, and no strict prefix of a valid one is
/// malformed.
fn check_payload(name: &str, bytes: &[u8], json: &serde_json::Value) {
    let verdict = decode_payload(bytes);
    match json["error"].as_str() {
        None => {
            assert!(
                matches!(verdict, PayloadVerdict::Complete { .. }),
                "{name}: {verdict:?}"
            );
            for n in 0..bytes.len() {
                let v = decode_payload(&bytes[..n]);
                assert_ne!(v, PayloadVerdict::Malformed, "{name}: prefix {n}");
            }
        }
        Some("incomplete") => assert_eq!(verdict, PayloadVerdict::Truncated, "{name}"),
        Some(_) => assert_eq!(verdict, PayloadVerdict::Malformed, "{name}"),
    }
}

#[test]
fn oracle_holds_on_mutations_of_small_vectors() {
    for (_, bytes, json) in common::load_vectors() {
        if bytes.len() > 1024 {
            continue;
        }
        if json["direction"] == "payload" {
            for i in 0..bytes.len() {
                for delta in [0x01u8, 0x40, 0x80, 0xff] {
                    let mut m = bytes.clone();
                    m[i] ^= delta;
                    decode_payload(&m);
                }
            }
            continue;
        }
        for i in 0..bytes.len() {
            for delta in [0x01u8, 0x40, 0x80, 0xff] {
                let mut m = bytes.clone();
                m[i] ^= delta;
                decode_any(&m);
            }
            let mut shorter = bytes.clone();
            shorter.remove(i);
            decode_any(&shorter);
        }
    }
}

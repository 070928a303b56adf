//! The fuzzing oracle of the sniffer: arbitrary bytes become a request, the request is
//! sniffed whole and cut, and the result must respect the sniffer's invariants.
//!
//! `fuzz/fuzz_targets/sniff.rs` calls [`sniff_bytes`]; the proptests and the fixture table
//! test (`sidecar/tests/sniff.rs`) call it too, so the target cannot rot on stable. It panics
//! (by design) only when an invariant breaks.

// Panicking is this module's job: a broken invariant must crash the fuzzer.
#![allow(clippy::panic)]

use aimux_wire::{Intent, IntentFlags, Protocol};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{MAX_TEXT, Scan, SniffRequest, ValueEnd, sniff};

/// Every flag the sniffer may set.
const KNOWN_FLAGS: u64 = IntentFlags::HEADER_BODY_MISMATCH.0
    | IntentFlags::STREAMING.0
    | IntentFlags::BATCH.0
    | IntentFlags::PARTIAL.0;

/// Panics if `intent` breaks an invariant: text within [`MAX_TEXT`] and free of control
/// characters, only defined flags, a protocol the sniffer produces.
pub fn check(intent: &Intent) {
    for (what, text) in [("operation", &intent.operation), ("target", &intent.target)] {
        assert!(
            text.len() <= MAX_TEXT,
            "{what} too long: {} bytes",
            text.len()
        );
        assert!(
            !text.chars().any(char::is_control),
            "{what} has a control character: {text:?}"
        );
    }
    assert_eq!(
        intent.flags.0 & !KNOWN_FLAGS,
        0,
        "undefined flags {:?}",
        intent.flags
    );
    assert!(
        matches!(
            intent.protocol,
            Protocol::Mcp | Protocol::A2a | Protocol::OpenAi | Protocol::Http
        ),
        "unexpected protocol {}",
        intent.protocol
    );
}

/// Sniffs `req` and checks the result, then sniffs about 16 prefixes of its body as
/// incomplete bodies (enough to land inside strings, keys and nesting, cheap enough for every
/// fuzz input) and checks those too: a prefix that ends inside the body's first JSON object
/// must be flagged `partial`. Returns the intent of the whole request.
pub fn sniff_checked(req: &SniffRequest<'_>) -> Intent {
    let intent = sniff(req);
    check(&intent);
    let object_end = first_object_end(req.body);
    let step = (req.body.len() / 16).max(1);
    for cut in (0..req.body.len()).step_by(step) {
        let cut_req = SniffRequest {
            body: req.body.get(..cut).unwrap_or_default(),
            complete: false,
            ..*req
        };
        let cut_intent = sniff(&cut_req);
        check(&cut_intent);
        if object_end.is_some_and(|end| cut < end) {
            assert!(
                cut_intent.flags.contains(IntentFlags::PARTIAL),
                "a body cut at {cut} inside its first object is not flagged partial: {cut_intent:?}"
            );
        }
    }
    intent
}

/// Where the first value ends (`usize::MAX` if it does not), if the body starts with an
/// object (not a batch: the hint of a batch is whole once its first element is).
fn first_object_end(body: &[u8]) -> Option<usize> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let mut scan = ValueEnd::default();
    let end =
        (1..=body.len()).find(|&n| scan.feed(body.get(n - 1..n).unwrap_or_default()) != Scan::More);
    Some(end.unwrap_or(usize::MAX))
}

/// Builds a request from arbitrary bytes and runs [`sniff_checked`] on it.
///
/// Layout: byte 0 picks the method (low 3 bits) and whether the body is complete (bit 3);
/// then, separated by `\n`, the target, header lines `name: value` up to an empty line, and
/// the body (the rest). Invalid header names or values are skipped.
pub fn sniff_bytes(data: &[u8]) -> Intent {
    let Some((&control, rest)) = data.split_first() else {
        return sniff_checked(&SniffRequest {
            method: &Method::GET,
            path: "/",
            headers: &HeaderMap::new(),
            body: &[],
            complete: true,
        });
    };
    const METHODS: [Method; 8] = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
    ];
    let method = &METHODS[usize::from(control & 7)];
    let complete = control & 8 == 0;
    let (target, mut rest) = split_line(rest);
    let path = String::from_utf8_lossy(target);
    let mut headers = HeaderMap::new();
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    sniff_checked(&SniffRequest {
        method,
        path: &path,
        headers: &headers,
        body: rest,
        complete,
    })
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (data, &[]),
    }
}

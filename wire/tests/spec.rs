//! Keeps `wire/SPEC.md` honest: the worked example's byte count and bytes, and every table
//! the code defines (fields, kinds, protocols, outcomes, static tables, error names), must
//! appear in the spec exactly as the code has them.
#![allow(clippy::unwrap_used)] // test code: clippy.toml allows unwrap in tests

mod common;

use aimux_wire::{
    FieldId, FrameId, Limits, Malformed, Outcome, Protocol, field_type as ty, frame_type,
    peek_preface, table,
};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).unwrap()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s
        .find(start)
        .unwrap_or_else(|| panic!("SPEC.md lacks {start:?}"))
        + start.len();
    let j = s[i..]
        .find(end)
        .unwrap_or_else(|| panic!("SPEC.md lacks {end:?}"))
        + i;
    &s[i..j]
}

#[test]
fn worked_example_size_is_the_number_in_the_spec() {
    let bytes = common::mcp_tools_call()
        .to_bytes(&Limits::default())
        .unwrap();
    let spec = spec();
    let quoted: usize = between(&spec, "**Total: ", " bytes**").parse().unwrap();
    assert_eq!(bytes.len(), quoted, "SPEC.md §10 quotes the wrong size");
    assert!(
        bytes.len() < 200,
        "the typical MCP envelope grew to {} bytes",
        bytes.len()
    );
    let block = peek_preface(&bytes, &Limits::default())
        .unwrap()
        .header_block_len;
    assert!(spec.contains(&format!("a {block}-byte header block")));
}

#[test]
fn worked_example_bytes_are_the_bytes_in_the_spec() {
    let bytes = common::mcp_tools_call()
        .to_bytes(&Limits::default())
        .unwrap();
    let spec = spec();
    let block = between(&spec, "<!-- worked-example:begin -->\n```text\n", "```");
    let expected = common::annotate(&bytes);
    assert_eq!(
        common::parse_hex(block).unwrap(),
        bytes.to_vec(),
        "SPEC.md §10 hex differs; it should read:\n{expected}"
    );
    assert_eq!(
        block, expected,
        "SPEC.md §10 annotations differ from the generator"
    );
    let vector =
        std::fs::read_to_string(common::vectors_dir().join("request_mcp_tools_call.hex")).unwrap();
    assert!(common::parse_hex(&vector).unwrap().starts_with(&bytes));
}

#[test]
fn tables_in_the_spec_match_the_code() {
    let spec = spec();
    let mut rows = Vec::new();
    for (i, (name, value)) in table::STATIC_TABLE.iter().enumerate() {
        let value = value.map_or("—".to_owned(), |v| format!("`{v}`"));
        rows.push(format!("| {} | `{name}` | {value} |\n", i + 1));
    }
    for (i, m) in table::METHODS.iter().enumerate() {
        rows.push(format!("| {} | `{m}` |\n", i + 1));
    }
    for o in Outcome::KNOWN {
        rows.push(format!("| {} | `{}` |", o.code(), o.as_str()));
    }
    for p in Protocol::ALL {
        rows.push(format!("| {} | `{}`", p.code(), p.as_str()));
    }
    for (t, name) in [
        (ty::IDENTITY, "identity"),
        (ty::INTENT, "intent"),
        (ty::DESTINATION, "destination"),
        (ty::TRACEPARENT, "traceparent"),
        (ty::TRACESTATE, "tracestate"),
        (ty::REQUEST_ID, "request-id"),
        (ty::TE_TRAILERS, "te-trailers"),
        (ty::HTTP_REQUEST_LINE, "http-request-line"),
        (ty::HTTP_HEADER, "http-header"),
        (ty::OUTCOME, "outcome"),
        (ty::REASON, "reason"),
        (ty::HTTP_STATUS, "http-status"),
        (ty::FRAMED_PAYLOAD, "framed-payload"),
    ] {
        rows.push(format!("| {t:#04x} | `{name}` |"));
    }
    for (t, name) in [
        (frame_type::DATA, "DATA"),
        (frame_type::TRAILERS, "TRAILERS"),
    ] {
        rows.push(format!("| {t:#04x} | {name} |"));
    }
    let l = Limits::default();
    for (name, value) in [
        ("max_header_block", format!("{} bytes", l.max_header_block)),
        ("max_field_value", format!("{} bytes", l.max_field_value)),
        ("max_fields", l.max_fields.to_string()),
        ("max_http_headers", l.max_http_headers.to_string()),
        (
            "max_payload_frame",
            format!("{} bytes", l.max_payload_frame),
        ),
    ] {
        rows.push(format!("| `{name}` | {value} |"));
    }
    let f = FieldId { ty: 1, name: "x" };
    let errors = [
        Malformed::BadMagic { offset: 0, byte: 0 },
        Malformed::UnsupportedVersion { version: 2 },
        Malformed::UnknownKind { kind: 9 },
        Malformed::WrongKind {
            expected: "request",
            found: "response",
        },
        Malformed::HeaderBlockTooLarge { len: 0, limit: 0 },
        Malformed::TooManyFields { limit: 0 },
        Malformed::TooManyHeaders { limit: 0 },
        Malformed::FieldTooLarge {
            field: f,
            len: 0,
            limit: 0,
        },
        Malformed::FieldOverrun {
            field: f,
            len: 0,
            remaining: 0,
        },
        Malformed::TruncatedFieldHeader { offset: 0 },
        Malformed::DuplicateField { field: f },
        Malformed::MissingField { field: f, why: "" },
        Malformed::NotAllowed {
            field: f,
            context: "",
        },
        Malformed::InvalidUtf8 { field: f },
        Malformed::InvalidValue {
            field: f,
            reason: "",
        },
        Malformed::TruncatedValue { field: f, what: "" },
        Malformed::TrailingBytes { field: f, extra: 0 },
        Malformed::UnknownProtocol { field: f, code: 0 },
        Malformed::UnknownStaticIndex { field: f, index: 0 },
        Malformed::InvalidStatus {
            field: f,
            status: 0,
        },
        Malformed::PayloadFrameTooLarge {
            frame: FrameId { ty: 0, name: "x" },
            len: 0,
            limit: 0,
        },
        Malformed::FrameAfterTrailers,
        Malformed::TruncatedPayload { inside: "" },
        Malformed::InvalidTrailers(Box::new(Malformed::TooManyFields { limit: 0 })),
    ];
    for e in errors {
        rows.push(format!("| `{}` |", e.label()));
    }
    let missing: Vec<&String> = rows.iter().filter(|r| !spec.contains(r.as_str())).collect();
    assert!(missing.is_empty(), "SPEC.md lacks these rows: {missing:#?}");
}

//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) carried in binary.
//!
//! The `traceparent` field is the header's four parts as 26 raw bytes: version (1),
//! trace-id (16), parent-id (8), trace-flags (1) — 26 bytes instead of the 55-character
//! header. `tracestate` travels as its own field, unchanged text. The W3C rules that make a
//! traceparent invalid (version 0xff, all-zero trace-id or parent-id) are enforced, and
//! tracestate must be non-empty printable ASCII, as the W3C grammar allows nothing else.

use std::fmt::Write as _;

use crate::error::{FieldId, Malformed};
use crate::field::{Sink, ValueReader};

/// Length of the binary traceparent value.
pub const TRACEPARENT_LEN: usize = 26;

/// A W3C trace context: traceparent and optional tracestate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// Traceparent version (0x00 today; 0xff is invalid).
    pub version: u8,
    /// Trace id; not all zeros.
    pub trace_id: [u8; 16],
    /// Parent (span) id; not all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// The `tracestate` header value, if any: non-empty printable ASCII.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`), as the
    /// sidecar receives it from the agent. Returns `None` if the W3C spec calls it invalid.
    /// Versions above 00 are accepted if they start with the version-00 layout.
    #[must_use]
    pub fn parse_traceparent(header: &[u8]) -> Option<TraceContext> {
        let (head, tail) = header.split_at_checked(55)?;
        let version = hex_byte(head.get(0..2)?)?;
        if version == 0xff || (version == 0 && !tail.is_empty()) {
            return None;
        }
        if !tail.is_empty() && tail.first() != Some(&b'-') {
            return None;
        }
        if head.get(2) != Some(&b'-') || head.get(35) != Some(&b'-') || head.get(52) != Some(&b'-')
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(head.get(3..35)?, &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex_into(head.get(36..52)?, &mut parent_id)?;
        let flags = hex_byte(head.get(53..55)?)?;
        let tc = TraceContext {
            version,
            trace_id,
            parent_id,
            flags,
            tracestate: None,
        };
        check_parent(&tc).then_some(tc)
    }

    /// Formats the `traceparent` header value (lower-case hex), for the gateway to forward.
    #[must_use]
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        let _ = write!(s, "{:02x}-", self.version);
        self.trace_id.iter().for_each(|b| {
            let _ = write!(s, "{b:02x}");
        });
        s.push('-');
        self.parent_id.iter().for_each(|b| {
            let _ = write!(s, "{b:02x}");
        });
        let _ = write!(s, "-{:02x}", self.flags);
        s
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    // W3C: lower-case hex only.
    match c {
        b'0'..=b'9' | b'a'..=b'f' => char::from(c).to_digit(16).map(|d| d as u8),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    match two {
        [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
        _ => None,
    }
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if out.len().checked_mul(2) != Some(hex.len()) {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = hex_byte(pair)?;
    }
    Some(())
}

fn check_parent(tc: &TraceContext) -> bool {
    tc.version != 0xff && tc.trace_id != [0; 16] && tc.parent_id != [0; 8]
}

fn invalid(field: FieldId, reason: &'static str) -> Malformed {
    Malformed::InvalidValue { field, reason }
}

/// Checks the traceparent part before encoding, with the decoder's rules.
pub(crate) fn check_traceparent(field: FieldId, tc: &TraceContext) -> Result<(), Malformed> {
    if tc.version == 0xff {
        return Err(invalid(field, "traceparent version 0xff is invalid"));
    }
    if !check_parent(tc) {
        return Err(invalid(
            field,
            "trace-id and parent-id must not be all zeros",
        ));
    }
    Ok(())
}

/// Checks a tracestate value: non-empty printable ASCII (W3C tracestate grammar).
pub(crate) fn check_tracestate(field: FieldId, value: &[u8]) -> Result<(), Malformed> {
    if value.is_empty() {
        return Err(invalid(
            field,
            "tracestate is empty (omit the field instead)",
        ));
    }
    if !value.iter().all(|&b| (0x20..=0x7e).contains(&b)) {
        return Err(invalid(field, "tracestate must be printable ASCII"));
    }
    Ok(())
}

pub(crate) fn write_traceparent(s: &mut dyn Sink, tc: &TraceContext) {
    s.put_slice(&[tc.version]);
    s.put_slice(&tc.trace_id);
    s.put_slice(&tc.parent_id);
    s.put_slice(&[tc.flags]);
}

/// Decodes the 26-byte traceparent value (tracestate is attached by the caller).
pub(crate) fn read_traceparent(field: FieldId, value: &[u8]) -> Result<TraceContext, Malformed> {
    let mut r = ValueReader::new(field, value);
    let [version] = r.array::<1>("version")?;
    let trace_id = r.array::<16>("trace-id")?;
    let parent_id = r.array::<8>("parent-id")?;
    let [flags] = r.array::<1>("trace-flags")?;
    r.finish()?;
    let tc = TraceContext {
        version,
        trace_id,
        parent_id,
        flags,
        tracestate: None,
    };
    check_traceparent(field, &tc)?;
    Ok(tc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Out;

    const F: FieldId = FieldId {
        ty: 0x04,
        name: "traceparent",
    };
    /// The example from the W3C Trace Context spec.
    const EXAMPLE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_w3c_example() {
        let tc = TraceContext::parse_traceparent(EXAMPLE).unwrap();
        assert_eq!(tc.version, 0);
        assert_eq!(tc.trace_id[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(
            tc.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(tc.flags, 1);
        assert_eq!(tc.traceparent().as_bytes(), EXAMPLE);
    }

    #[test]
    fn rejects_invalid_traceparent_headers() {
        let bad: [&[u8]; 7] = [
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473",
        ];
        for b in bad {
            assert_eq!(
                TraceContext::parse_traceparent(b),
                None,
                "{}",
                b.escape_ascii()
            );
        }
        // A future version may append fields after a '-'.
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz";
        assert_eq!(TraceContext::parse_traceparent(future).unwrap().version, 1);
    }

    #[test]
    fn binary_round_trip() {
        let tc = TraceContext::parse_traceparent(EXAMPLE).unwrap();
        let mut v = Vec::new();
        write_traceparent(&mut Out(&mut v), &tc);
        assert_eq!(v.len(), TRACEPARENT_LEN);
        assert_eq!(read_traceparent(F, &v).unwrap(), tc);
        assert_eq!(
            read_traceparent(F, &v[..25]),
            Err(Malformed::TruncatedValue {
                field: F,
                what: "trace-flags"
            })
        );
        v.push(0);
        assert_eq!(
            read_traceparent(F, &v),
            Err(Malformed::TrailingBytes { field: F, extra: 1 })
        );
    }

    #[test]
    fn binary_rejects_w3c_invalid_values() {
        let mut v = vec![0u8; TRACEPARENT_LEN];
        assert!(matches!(
            read_traceparent(F, &v),
            Err(Malformed::InvalidValue { .. })
        ));
        v[1] = 1;
        v[20] = 1;
        assert!(read_traceparent(F, &v).is_ok());
        v[0] = 0xff;
        assert!(read_traceparent(F, &v).is_err());
    }

    #[test]
    fn tracestate_rules() {
        assert!(check_tracestate(F, b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").is_ok());
        assert!(check_tracestate(F, b"").is_err());
        assert!(check_tracestate(F, b"a=\x7f").is_err());
        assert!(check_tracestate(F, "a=\u{e9}".as_bytes()).is_err());
    }
}

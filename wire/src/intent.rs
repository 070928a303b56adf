//! The request's intent: what the sidecar's sniffer concluded the agent is trying to do.
//!
//! Value layout (SPEC.md §5.2): `protocol varint, flags varint, operation (varint length +
//! UTF-8), target (UTF-8, the rest of the field)`. Empty operation/target mean "not known".
//! Flags are a bit set; bits this version does not define are carried, not rejected, so a
//! newer sniffer can add hints that older gateways pass through and ignore.

use std::fmt;
use std::str::FromStr;

use crate::error::{FieldId, Malformed};
use crate::field::{Sink, ValueReader, utf8};
use crate::varint;

/// The application protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Not classified (code 0).
    #[default]
    Unknown,
    /// Model Context Protocol (code 1).
    Mcp,
    /// Agent2Agent (code 2).
    A2a,
    /// An OpenAI-compatible API (code 3).
    OpenAi,
    /// Other HTTP (code 4).
    Http,
    /// A raw TCP byte stream (code 5).
    Tcp,
}

impl Protocol {
    /// Every protocol, in code order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Unknown,
        Protocol::Mcp,
        Protocol::A2a,
        Protocol::OpenAi,
        Protocol::Http,
        Protocol::Tcp,
    ];

    /// The protocol's code on the wire.
    #[must_use]
    pub const fn code(self) -> u64 {
        match self {
            Protocol::Unknown => 0,
            Protocol::Mcp => 1,
            Protocol::A2a => 2,
            Protocol::OpenAi => 3,
            Protocol::Http => 4,
            Protocol::Tcp => 5,
        }
    }

    /// The protocol for a wire code, if this version defines it.
    #[must_use]
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Protocol::Unknown),
            1 => Some(Protocol::Mcp),
            2 => Some(Protocol::A2a),
            3 => Some(Protocol::OpenAi),
            4 => Some(Protocol::Http),
            5 => Some(Protocol::Tcp),
            _ => None,
        }
    }

    /// Lower-case name: `unknown`, `mcp`, `a2a`, `openai`, `http`, `tcp`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Unknown => "unknown",
            Protocol::Mcp => "mcp",
            Protocol::A2a => "a2a",
            Protocol::OpenAi => "openai",
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error from parsing a [`Protocol`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol name {0:?} (expected unknown, mcp, a2a, openai, http or tcp)")]
pub struct UnknownProtocolName(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocolName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocolName(s.to_owned()))
    }
}

/// Hints about a request, as a bit set. Undefined bits are preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IntentFlags(pub u64);

impl IntentFlags {
    /// No flags.
    pub const NONE: IntentFlags = IntentFlags(0);
    /// Bit 0: the protocol headers and the body disagreed (e.g. `Mcp-Method` vs the
    /// JSON-RPC `method`); the intent was taken from the body.
    pub const HEADER_BODY_MISMATCH: IntentFlags = IntentFlags(1 << 0);
    /// Bit 1: the request asks for a streamed reply (SSE, `"stream": true`).
    pub const STREAMING: IntentFlags = IntentFlags(1 << 1);
    /// Bit 2: the body is a JSON-RPC batch (an array of requests); the intent describes its
    /// first request.
    pub const BATCH: IntentFlags = IntentFlags(1 << 2);
    /// Bit 3: the body could not be read whole (larger than the sniffer's look-ahead,
    /// compressed, or still arriving when the look-ahead ended), or a value was too long or
    /// unprintable to carry: the intent is the best available from what was seen, and parts
    /// of it may be missing.
    pub const PARTIAL: IntentFlags = IntentFlags(1 << 3);

    /// True if every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: IntentFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    #[must_use]
    pub const fn union(self, other: IntentFlags) -> IntentFlags {
        IntentFlags(self.0 | other.0)
    }
}

/// What the request is for: protocol, operation (e.g. `tools/call`) and target (e.g. a tool
/// name, skill, model or path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Intent {
    /// The protocol spoken.
    pub protocol: Protocol,
    /// Operation, e.g. `tools/call`, `SendMessage`, `chat`; empty if unknown.
    pub operation: String,
    /// Target, e.g. a tool name, skill, model or path; empty if unknown.
    pub target: String,
    /// Hints such as [`IntentFlags::HEADER_BODY_MISMATCH`].
    pub flags: IntentFlags,
}

impl Intent {
    /// An intent with no flags.
    pub fn new(
        protocol: Protocol,
        operation: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        Intent {
            protocol,
            operation: operation.into(),
            target: target.into(),
            flags: IntentFlags::NONE,
        }
    }
}

/// Checks an intent before encoding.
pub(crate) fn check(field: FieldId, intent: &Intent) -> Result<(), Malformed> {
    if intent.flags.0 > varint::MAX {
        return Err(Malformed::VarintOutOfRange {
            field,
            value: intent.flags.0,
        });
    }
    Ok(())
}

pub(crate) fn write(s: &mut dyn Sink, intent: &Intent) {
    s.put_varint(intent.protocol.code());
    s.put_varint(intent.flags.0);
    s.put_prefixed(intent.operation.as_bytes());
    s.put_slice(intent.target.as_bytes());
}

pub(crate) fn read(field: FieldId, value: &[u8]) -> Result<Intent, Malformed> {
    let mut r = ValueReader::new(field, value);
    let code = r.varint("protocol")?;
    let protocol = Protocol::from_code(code).ok_or(Malformed::UnknownProtocol { field, code })?;
    let flags = IntentFlags(r.varint("flags")?);
    let operation = utf8(field, r.prefixed("operation")?)?;
    let target = utf8(field, r.rest())?;
    Ok(Intent {
        protocol,
        operation: operation.to_owned(),
        target: target.to_owned(),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Out;

    const F: FieldId = FieldId {
        ty: 0x02,
        name: "intent",
    };

    #[test]
    fn layout_and_round_trip() {
        let mut intent = Intent::new(Protocol::Mcp, "tools/call", "search_web");
        intent.flags = IntentFlags::STREAMING;
        let mut v = Vec::new();
        write(&mut Out(&mut v), &intent);
        assert_eq!(v, b"\x01\x02\x0atools/callsearch_web".to_vec());
        assert_eq!(read(F, &v).unwrap(), intent);
        let empty = Intent::default();
        let mut v = Vec::new();
        write(&mut Out(&mut v), &empty);
        assert_eq!(v, vec![0, 0, 0]);
        assert_eq!(read(F, &v).unwrap(), empty);
    }

    #[test]
    fn protocol_codes_are_validated() {
        assert_eq!(
            read(F, b"\x06\x00\x00"),
            Err(Malformed::UnknownProtocol { field: F, code: 6 })
        );
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_code(p.code()), Some(p));
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        assert!("MCP".parse::<Protocol>().is_err());
    }

    #[test]
    fn unknown_flag_bits_are_kept() {
        let i = read(F, b"\x01\x80\x00\x01\x00\x00").unwrap();
        assert_eq!(i.flags, IntentFlags(0x100));
        assert!(!i.flags.contains(IntentFlags::HEADER_BODY_MISMATCH));
        assert!(!i.flags.contains(IntentFlags::PARTIAL));
        let too_big = Intent {
            flags: IntentFlags(u64::MAX),
            ..Intent::default()
        };
        assert!(matches!(
            check(F, &too_big),
            Err(Malformed::VarintOutOfRange { .. })
        ));
    }

    #[test]
    fn defined_flag_bits() {
        let all = IntentFlags::HEADER_BODY_MISMATCH
            .union(IntentFlags::STREAMING)
            .union(IntentFlags::BATCH)
            .union(IntentFlags::PARTIAL);
        assert_eq!(all, IntentFlags(0b1111));
        let mut v = Vec::new();
        let intent = Intent {
            flags: IntentFlags::BATCH.union(IntentFlags::PARTIAL),
            ..Intent::new(Protocol::Mcp, "tools/call", "a")
        };
        write(&mut Out(&mut v), &intent);
        assert_eq!(v[1], 0x0c);
        assert_eq!(read(F, &v).unwrap(), intent);
    }

    #[test]
    fn text_must_be_utf8_and_complete() {
        assert_eq!(
            read(F, b"\x01\x00\x01\xff"),
            Err(Malformed::InvalidUtf8 { field: F })
        );
        assert_eq!(
            read(F, b"\x01\x00\x00\xc3"),
            Err(Malformed::InvalidUtf8 { field: F })
        );
        assert_eq!(
            read(F, b"\x01\x00\x09tools"),
            Err(Malformed::TruncatedValue {
                field: F,
                what: "operation"
            })
        );
        assert_eq!(
            read(F, b"\x01"),
            Err(Malformed::TruncatedValue {
                field: F,
                what: "flags"
            })
        );
    }
}

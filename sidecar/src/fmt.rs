//! Small formatting helpers for operator-facing messages.

use std::fmt;
use std::time::Duration;

use aimux_wire::codes;

/// A duration as people write it: `50 ms`, `5 s`, `1.5 s`, `2 min`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Secs(pub(crate) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1000 {
            write!(f, "{ms} ms")
        } else if d.as_secs() >= 120 && d.as_secs().is_multiple_of(60) {
            write!(f, "{} min", d.as_secs() / 60)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{} s", d.as_secs())
        } else {
            // One decimal is enough for people; trailing zero trimmed (`1.5 s`, not `1.50 s`).
            let tenths = (ms + 50) / 100;
            if tenths.is_multiple_of(10) {
                write!(f, "{} s", tenths / 10)
            } else {
                write!(f, "{}.{} s", tenths / 10, tenths % 10)
            }
        }
    }
}

/// The SPEC.md §12 name of an application error code (connection or stream).
pub(crate) fn app_code_name(code: u64) -> &'static str {
    let Ok(code) = u32::try_from(code) else {
        return "unknown";
    };
    match code {
        codes::CLOSE_SHUTDOWN => "SHUTDOWN",
        codes::CLOSE_REVOKED => "REVOKED",
        codes::CLOSE_PROTOCOL_VIOLATION => "PROTOCOL_VIOLATION",
        codes::CLOSE_UNAUTHORIZED => "UNAUTHORIZED",
        codes::STREAM_CANCELLED => "CANCELLED",
        codes::STREAM_MALFORMED => "MALFORMED",
        codes::STREAM_UPSTREAM_FAILED => "UPSTREAM_FAILED",
        codes::STREAM_TIMEOUT => "TIMEOUT",
        codes::INTERNAL => "INTERNAL",
        // SPEC.md §12: an unknown code is treated as INTERNAL.
        _ => "unknown, treated as INTERNAL",
    }
}

/// `outer: inner: innermost`, each message once (wrappers often repeat their source's).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in std::iter::successors(Some(error), |e| e.source()) {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// [`error_chain`] without hyper-util's generic outer wrapper ("client error (Connect)"),
/// which says nothing its sources do not.
pub(crate) fn client_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    error_chain(error.source().unwrap_or(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        let inner = Wrapped("connection refused", None);
        let twice = Wrapped("connection refused", Some(Box::new(inner)));
        let outer = Wrapped("client error (Connect)", Some(Box::new(twice)));
        assert_eq!(
            error_chain(&outer),
            "client error (Connect): connection refused"
        );
        assert_eq!(client_error_chain(&outer), "connection refused");
        let alone = Wrapped("reset", None);
        assert_eq!(client_error_chain(&alone), "reset");
    }

    #[test]
    fn durations_read_naturally() {
        let s = |d| Secs(d).to_string();
        assert_eq!(s(Duration::from_millis(50)), "50 ms");
        assert_eq!(s(Duration::from_secs(5)), "5 s");
        assert_eq!(s(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(s(Duration::from_millis(1999)), "2 s");
        assert_eq!(s(Duration::from_secs(300)), "5 min");
        assert_eq!(s(Duration::from_secs(90)), "90 s");
    }

    #[test]
    fn code_names() {
        assert_eq!(app_code_name(0x01), "REVOKED");
        assert_eq!(app_code_name(0x12), "UPSTREAM_FAILED");
        assert_eq!(app_code_name(0x99), "unknown, treated as INTERNAL");
        assert_eq!(app_code_name(u64::MAX), "unknown");
    }
}

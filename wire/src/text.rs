//! Syntax rules for the request's text fields: the claimed identity and the destination.
//!
//! The identity is checked against the SPIFFE ID grammar (SPIFFE-ID specification §2:
//! `spiffe://` + trust domain of `[a-z0-9._-]` + path segments of `[A-Za-z0-9._-]`, no empty,
//! `.` or `..` segments, no trailing `/`, at most 2048 bytes) so that a gateway comparing it
//! with the peer certificate's URI SAN compares like with like. The destination is a service
//! name: non-empty, without whitespace or control characters (it ends up in logs and routes).

use crate::error::{FieldId, Malformed};

/// Longest SPIFFE ID accepted (SPIFFE-ID specification §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

fn invalid(field: FieldId, reason: &'static str) -> Malformed {
    Malformed::InvalidValue { field, reason }
}

/// Checks a SPIFFE ID.
pub(crate) fn check_spiffe_id(field: FieldId, id: &str) -> Result<(), Malformed> {
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Err(invalid(field, "SPIFFE ID is longer than 2048 bytes"));
    }
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err(invalid(field, "SPIFFE ID must start with spiffe://"));
    };
    let (domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if domain.is_empty() {
        return Err(invalid(field, "SPIFFE ID has an empty trust domain"));
    }
    let domain_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if !domain.bytes().all(domain_ok) {
        return Err(invalid(
            field,
            "SPIFFE trust domain may only contain a-z, 0-9, '.', '-' and '_'",
        ));
    }
    if path.is_empty() {
        return Ok(());
    }
    let segment_ok = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    // `path` starts with '/', so the first split item is empty; skip it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(invalid(field, "SPIFFE ID path has an empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(invalid(field, "SPIFFE ID path has a '.' or '..' segment"));
        }
        if !segment.bytes().all(segment_ok) {
            return Err(invalid(
                field,
                "SPIFFE ID path may only contain A-Z, a-z, 0-9, '.', '-' and '_'",
            ));
        }
    }
    Ok(())
}

/// Checks a destination service name.
pub(crate) fn check_destination(field: FieldId, dest: &str) -> Result<(), Malformed> {
    if dest.is_empty() {
        return Err(invalid(field, "destination is empty"));
    }
    if dest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            field,
            "destination contains whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: FieldId = FieldId {
        ty: 0x01,
        name: "identity",
    };

    #[test]
    fn valid_spiffe_ids() {
        for id in [
            "spiffe://aimux.local/agent/demo-agent",
            "spiffe://example.org",
            "spiffe://trust_domain-1.example/ns/Default/sa/A.b_c-d",
        ] {
            assert_eq!(check_spiffe_id(F, id), Ok(()), "{id}");
        }
    }

    #[test]
    fn invalid_spiffe_ids() {
        let long = format!("spiffe://a/{}", "x".repeat(2048));
        for id in [
            "",
            "http://aimux.local/agent",
            "SPIFFE://aimux.local/agent",
            "spiffe://",
            "spiffe:///agent",
            "spiffe://Aimux.local/agent",
            "spiffe://aimux.local:8443/agent",
            "spiffe://user@aimux.local/agent",
            "spiffe://aimux.local/",
            "spiffe://aimux.local//agent",
            "spiffe://aimux.local/agent/../admin",
            "spiffe://aimux.local/./agent",
            "spiffe://aimux.local/agent?x=1",
            "spiffe://aimux.local/agent#f",
            "spiffe://aimux.local/ag%20ent",
            "spiffe://aimux.local/\u{e9}",
            long.as_str(),
        ] {
            assert!(check_spiffe_id(F, id).is_err(), "{id}");
        }
    }

    #[test]
    fn destinations() {
        for ok in ["tools", "api.openai.com:443", "svc-1.ns", "\u{e9}t\u{e9}"] {
            assert_eq!(check_destination(F, ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a\tb", "a\nb", "a\u{7f}", "a\u{a0}b"] {
            assert!(check_destination(F, bad).is_err(), "{bad:?}");
        }
    }
}

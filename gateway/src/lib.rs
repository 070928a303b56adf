//! The AIMux gateway: the mesh's policy point.
//!
//! It accepts sidecar QUIC connections (client certificates chained to the mesh CA and
//! absent from its CRL), decodes the `aimux-wire` envelope that opens each stream, routes on
//! the destination and intent, enforces access rules against the certificate-proven SPIFFE
//! identity, records metrics and forwards the opaque payload upstream. A dev-mode plain-HTTP
//! listener offers the same routing keyed on a claimed identity, for experiments only.
//!
//! See `ARCHITECTURE.md` at the repository root for where it sits in the data path.
#![forbid(unsafe_code)]

pub mod intent_pattern;

pub use intent_pattern::{Glob, IntentPattern, IntentPatternError};

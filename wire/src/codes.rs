//! QUIC application error codes used by AIMux on the sidecar–gateway connection.
//!
//! RFC 9000 §20.2 leaves application protocol error codes to the application; they travel
//! in CONNECTION_CLOSE (type 0x1d), RESET_STREAM and STOP_SENDING frames. Both peers MUST
//! treat an unknown code like [`INTERNAL`]. SPEC.md §12 lists them.

/// Connection close: orderly shutdown (the gateway or sidecar is stopping). Reconnect.
pub const CLOSE_SHUTDOWN: u32 = 0x00;
/// Connection close: the peer's certificate was revoked (reason phrase `revoked`). The
/// sidecar MUST NOT reconnect with the same certificate at its normal pace.
pub const CLOSE_REVOKED: u32 = 0x01;
/// Connection close: the peer broke this protocol (e.g. opened a stream the other side may
/// not open).
pub const CLOSE_PROTOCOL_VIOLATION: u32 = 0x02;
/// Connection close: the peer's certificate no longer satisfies the mesh policy (e.g. its
/// identity left the trust domain after a CA change).
pub const CLOSE_UNAUTHORIZED: u32 = 0x03;

/// Stream reset / stop sending: the request was cancelled (the agent went away).
pub const STREAM_CANCELLED: u32 = 0x10;
/// Stream reset: the envelope was malformed or over a limit.
pub const STREAM_MALFORMED: u32 = 0x11;
/// Stream reset: the upstream failed mid-body; the payload is incomplete.
pub const STREAM_UPSTREAM_FAILED: u32 = 0x12;
/// Stream reset / stop sending: a time limit expired (e.g. waiting for the envelope).
pub const STREAM_TIMEOUT: u32 = 0x13;
/// Anything else that went wrong inside a peer.
pub const INTERNAL: u32 = 0x1f;

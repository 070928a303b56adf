//! The AIMux sidecar: one per agent.
//!
//! It owns the agent-facing side of the mesh: local listeners on loopback (one per service
//! the agent may call, plus a generic proxy listener), protocol sniffing that turns each
//! request into an intent hint without changing a byte, and the single persistent
//! mutual-TLS QUIC connection to the gateway on which every request becomes its own
//! bidirectional stream opened by an `aimux-wire` request envelope.
//!
//! See `ARCHITECTURE.md` at the repository root for where it sits in the data path.
#![forbid(unsafe_code)]

//! AIMux benchmarks: open-loop (coordinated-omission corrected) and closed-loop load
//! generation with HDR histograms, comparing the direct path, the dev-mode gateway, the
//! sidecar → QUIC → gateway path and baselines, on loopback and over an emulated WAN link.
//!
//! Results and the commands that produce them live in `bench/RESULTS.md`.
#![forbid(unsafe_code)]

pub mod compare;
pub mod load;
pub mod netem;
pub mod plot;
pub mod ports;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod semantic;

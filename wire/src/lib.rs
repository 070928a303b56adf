//! The AIMux wire envelope (being written).
#![forbid(unsafe_code)]

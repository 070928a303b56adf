//! AIMux certificates (being written).
#![forbid(unsafe_code)]

//! End-to-end tests of AIMux against real peers: agent SDKs, HTTP/1.1, HTTP/2 and HTTP/3
//! upstreams, and hosts in network namespaces the tests create themselves. The tests live in
//! `tests/`; this library holds the helpers they share.
#![forbid(unsafe_code)]

//! The sidecar's integration tests: real agents' HTTP/1.1 and HTTP/2 clients, a real QUIC test
//! gateway, real certificates.
//!
//! One binary, each file a module: every test binary links the whole dependency tree (for
//! the gateway, the in-process embedding model too), so a binary per file cost a 20-70 MB
//! link per file and more disk than CI had.

mod support;

mod end_to_end;
mod h2_agent;
mod http;
mod lookahead;
mod trailers;
mod tunnel;

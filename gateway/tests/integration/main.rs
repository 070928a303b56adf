//! The gateway's integration tests: real QUIC and HTTP/2 tunnels, real certificates and real
//! upstreams (HTTP/1.1, h2c, HTTP/2 over TLS, HTTP/3, aioquic).
//!
//! One binary, each file a module: every test binary links the whole dependency tree (for
//! the gateway, the in-process embedding model too), so a binary per file cost a 20-70 MB
//! link per file and more disk than CI had.

mod support;

mod dev_and_admin;
mod forwarding;
mod h2c_upstream;
mod h3_interop;
mod h3_upstream;
mod identity;
mod large_bodies;
mod policy;
mod resilience;
mod semantic_routing;
mod tls_upstream;
mod trailers;

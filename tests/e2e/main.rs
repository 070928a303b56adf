//! End-to-end tests: real `aimux` processes (gateway and sidecars) on loopback and in network
//! namespaces the tests create.
//!
//! One binary, each file a module: every test binary links the whole dependency tree (for
//! the gateway, the in-process embedding model too), so a binary per file cost a 20-70 MB
//! link per file and more disk than CI had.

mod support;

mod agent_to_agent;
mod data_path;
mod policy;
mod raw_tcp;
mod trailers;
mod up;

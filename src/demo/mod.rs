//! Demo upstreams served by the `aimux` binary itself (`builtin:echo`, `builtin:mcp-tools`),
//! so that the default mesh file runs on a machine with nothing else installed.
//!
//! Each is a real HTTP server (HTTP/1.1 and HTTP/2, hyper) on an ephemeral loopback port;
//! the gateway reaches it like any other upstream.

mod echo;
mod mcp_tools;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mesh::Builtin;

pub(crate) type DemoBody = BoxBody<Bytes, hyper::Error>;

/// A running demo upstream; it stops when the token is cancelled.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
}

/// Binds `builtin` on an ephemeral loopback port and serves it until `shutdown`.
pub(crate) async fn start(
    builtin: Builtin,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let conns = tasks.clone();
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(%addr, "demo upstream accept failed: {e}");
                        continue;
                    }
                },
            };
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(builtin, req));
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => if let Err(e) = res {
                        tracing::debug!("demo upstream connection ended: {e}");
                    },
                    () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    Ok(Running { addr })
}

async fn handle(
    builtin: Builtin,
    req: Request<Incoming>,
) -> Result<Response<DemoBody>, Infallible> {
    Ok(match builtin {
        Builtin::Echo => echo::handle(req),
        Builtin::McpTools => mcp_tools::handle(req).await,
    })
}

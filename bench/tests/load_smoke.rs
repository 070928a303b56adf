//! The load generator against a real HTTP server (hyper, HTTP/1.1 and HTTP/2 on loopback):
//! short, low-rate runs that check counts and histograms, never speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_bench::load::{self, HttpVersion, LoadConfig, Mode, Progress};
use aimux_bench::report;
use http_body_util::BodyExt;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// An echo server on its own runtime thread; lives until the test process ends.
fn echo_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(body)))
                        },
                    );
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn config(addr: SocketAddr, mode: Mode, http: HttpVersion) -> LoadConfig {
    LoadConfig {
        url: format!("http://{addr}/echo").parse().unwrap(),
        mode,
        connections: 4,
        duration: Duration::from_millis(800),
        warmup: Duration::from_millis(100),
        body_size: 1024,
        http,
        timeout: Duration::from_secs(5),
        headers: vec![("x-test".into(), "1".into())],
    }
}

#[test]
fn open_loop_sends_at_the_requested_rate_over_http1_and_http2() {
    let addr = echo_server();
    for http in [HttpVersion::Http1, HttpVersion::Http2] {
        let progress = Arc::new(Progress::default());
        let result = load::run(&config(addr, Mode::Open { rate: 200.0 }, http), &progress).unwrap();
        assert_eq!(result.errors, 0, "{http:?}: {:?}", result.error_samples);
        // 200/s for 0.8 s measured: 160 requests, give or take the edges of the window.
        assert!(
            (150..=170).contains(&result.requests),
            "{http:?}: {} requests",
            result.requests
        );
        assert_eq!(result.corrected.len(), result.requests);
        assert!(result.corrected.value_at_percentile(50.0) > 0);
        let summary = report::Summary::new("echo", &result);
        assert!(report::table(&[summary]).contains("echo"));
    }
}

#[test]
fn closed_loop_runs_back_to_back() {
    let addr = echo_server();
    let progress = Arc::new(Progress::default());
    let result = load::run(&config(addr, Mode::Closed, HttpVersion::Http1), &progress).unwrap();
    assert_eq!(result.errors, 0, "{:?}", result.error_samples);
    assert!(result.requests > 100, "{} requests", result.requests);
}

#[test]
fn unreachable_target_is_an_error_that_names_it() {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let progress = Arc::new(Progress::default());
    let err = load::run(&config(addr, Mode::Closed, HttpVersion::Http1), &progress).unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

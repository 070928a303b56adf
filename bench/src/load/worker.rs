//! One connection of the load generator, on its own thread: connect, then send at the
//! scheduled times (or back to back), recording every latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{HttpVersion, LoadConfig, MAX_LATENCY_US, Progress, Schedule, new_histogram};

/// Connection-level failures that end a worker (request failures are counted, not fatal).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("cannot start a runtime for a load connection: {0}")]
    Runtime(std::io::Error),
    #[error("cannot connect to {addr}: {source}; is the target running?")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: hyper::Error },
    #[error("a load thread panicked")]
    Panicked,
}

/// Where to connect and what to put in the request line.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: String,
    authority: String,
    path: String,
}

impl Target {
    pub(crate) fn from_url(url: &http::Uri) -> Option<Target> {
        if url.scheme_str() != Some("http") {
            return None;
        }
        let authority = url.authority()?;
        let port = authority.port_u16()?;
        Some(Target {
            // `host()` keeps IPv6 brackets, which is what `connect` wants: "[::1]:80".
            addr: format!("{}:{port}", authority.host()),
            authority: authority.to_string(),
            path: url
                .path_and_query()
                .map_or("/".to_owned(), ToString::to_string),
        })
    }
}

pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) config: LoadConfig,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

pub(crate) struct WorkerResult {
    pub(crate) corrected: Histogram<u64>,
    pub(crate) uncorrected: Histogram<u64>,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

pub(crate) fn run(
    plan: Plan,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<WorkerResult, WorkerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WorkerError::Runtime)?;
    let mut sender = rt.block_on(connect(&plan.target, plan.config.http))?;
    let body = Bytes::from(vec![b'x'; plan.config.body_size]);
    let mut result = WorkerResult {
        corrected: new_histogram(),
        uncorrected: new_histogram(),
        requests: 0,
        errors: 0,
        error_samples: Vec::new(),
    };
    let mut i: u64 = 0;
    loop {
        let intended = match plan.schedule {
            Some(s) => s.at(i),
            None => Instant::now(),
        };
        if intended >= plan.end || stop.load(Ordering::Relaxed) {
            break;
        }
        i += 1;
        sleep_until(intended);
        let sent = Instant::now();
        let outcome = rt.block_on(async {
            tokio::time::timeout(plan.config.timeout, async {
                match send(&mut sender, &plan, body.clone()).await {
                    // The server closed the idle connection (e.g. HTTP/1.0 or an idle timeout):
                    // that is not a failed request. Reconnect and send it; the reconnect time
                    // is part of this request's latency, as it would be for a real client.
                    Err(SendError::NotSent(_)) => {
                        sender = connect(&plan.target, plan.config.http)
                            .await
                            .map_err(|e| e.to_string())?;
                        send(&mut sender, &plan, body.clone())
                            .await
                            .map_err(SendError::into_message)
                    }
                    other => other.map_err(SendError::into_message),
                }
            })
            .await
        });
        let done = Instant::now();
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("no response within {:?}", plan.config.timeout)),
        };
        if let Some(e) = error {
            progress.errors.fetch_add(1, Ordering::Relaxed);
            if intended >= plan.measure_from {
                result.errors += 1;
                if result.error_samples.len() < 3 {
                    result.error_samples.push(e);
                }
            }
            // The connection may be unusable now: start a fresh one.
            sender = rt.block_on(connect(&plan.target, plan.config.http))?;
            continue;
        }
        progress.completed.fetch_add(1, Ordering::Relaxed);
        if intended >= plan.measure_from {
            result.requests += 1;
            let start = if plan.schedule.is_some() {
                intended
            } else {
                sent
            };
            record(&mut result.corrected, done - start);
            record(&mut result.uncorrected, done - sent);
        }
    }
    Ok(result)
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(MAX_LATENCY_US)
        .clamp(1, MAX_LATENCY_US);
    let _ = histogram.record(us);
}

/// Sleeps precisely until `deadline` (no-op if it has passed).
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

async fn connect(target: &Target, version: HttpVersion) -> Result<Sender, WorkerError> {
    let stream = tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(|source| WorkerError::Connect {
            addr: target.addr.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let handshake_error = |source| WorkerError::Handshake {
        addr: target.addr.clone(),
        source,
    };
    Ok(match version {
        HttpVersion::Http1 => {
            let (sender, conn) = http1::handshake(io).await.map_err(handshake_error)?;
            tokio::spawn(conn);
            Sender::H1(sender)
        }
        HttpVersion::Http2 => {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(handshake_error)?;
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    })
}

/// Why a request failed.
enum SendError {
    /// The connection was closed before the request went out; nothing was sent.
    NotSent(String),
    Failed(String),
}

impl SendError {
    fn into_message(self) -> String {
        match self {
            SendError::NotSent(m) | SendError::Failed(m) => m,
        }
    }
}

async fn send(sender: &mut Sender, plan: &Plan, body: Bytes) -> Result<(), SendError> {
    let method = if body.is_empty() { "GET" } else { "POST" };
    let mut builder = hyper::Request::builder().method(method);
    // A `host` among the configured headers replaces the URL's (e.g. the dev-mode gateway
    // routes on Host); two Host fields would be a malformed request.
    let custom_host = plan
        .config
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"));
    builder = match sender {
        Sender::H1(_) if custom_host => builder.uri(plan.target.path.as_str()),
        Sender::H1(_) => builder
            .uri(plan.target.path.as_str())
            .header("host", plan.target.authority.as_str()),
        Sender::H2(_) => builder.uri(format!(
            "http://{}{}",
            plan.target.authority, plan.target.path
        )),
    };
    for (name, value) in &plan.config.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| SendError::Failed(format!("bad request: {e}")))?;
    let not_sent = |e: hyper::Error| SendError::NotSent(e.to_string());
    let response = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(not_sent)?;
            s.send_request(request).await
        }
        Sender::H2(s) => {
            s.ready().await.map_err(not_sent)?;
            s.send_request(request).await
        }
    }
    .map_err(|e| SendError::Failed(e.to_string()))?;
    let status = response.status();
    let _ = response
        .into_body()
        .collect()
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Failed(format!("HTTP {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_http_host_and_port() {
        let t = Target::from_url(&"http://127.0.0.1:8080/a?b=1".parse().unwrap()).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/a?b=1")
        );
        let v6 = Target::from_url(&"http://[::1]:80/".parse().unwrap()).unwrap();
        assert_eq!(v6.addr, "[::1]:80");
        assert!(Target::from_url(&"https://x:1/".parse().unwrap()).is_none());
        assert!(Target::from_url(&"http://x/".parse().unwrap()).is_none());
    }
}

//! HTTP/1.1 clients for the tests: hyper's client connection (keep-alive, streaming bodies)
//! and a raw TCP client that writes bytes exactly as given (pipelining, odd request forms).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every client-side wait in the tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A keep-alive HTTP/1.1 client connection.
pub struct Client<B = Full<Bytes>> {
    send: SendRequest<B>,
}

impl<B> Client<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub async fn connect(addr: SocketAddr) -> Client<B> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Client { send }
    }

    /// Sends a request and returns the response head (the body streams).
    pub async fn send(&mut self, request: Request<B>) -> Response<Incoming> {
        tokio::time::timeout(WAIT, async {
            self.send.ready().await.unwrap();
            self.send.send_request(request).await.unwrap()
        })
        .await
        .expect("no response in time")
    }
}

/// One request on a fresh connection; returns the response with its whole body.
pub async fn fetch(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    let mut client = Client::connect(addr).await;
    let response = client.send(request).await;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body not complete in time")
        .unwrap()
        .to_bytes();
    (parts, body)
}

/// A GET with a `Host` header, as a client configured with `http://HOST/path` sends it.
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub fn post(host: &str, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", host)
        .body(Full::new(body.into()))
        .unwrap()
}

/// A raw TCP connection to the sidecar, for byte-exact requests.
pub struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// A response parsed from the raw byte stream.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        Raw {
            tcp,
            buf: Vec::new(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("no bytes in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; had {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads exactly until `needle` has been received, returning everything up to and
    /// including it.
    pub async fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, needle) {
                let rest = self.buf.split_off(at + needle.len());
                return std::mem::replace(&mut self.buf, rest);
            }
            self.fill().await;
        }
    }

    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads one response head.
    pub async fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let head = self.read_until(b"\r\n\r\n").await;
        let text = String::from_utf8(head).unwrap();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        (status, headers)
    }

    /// Reads one whole response (content-length or chunked framing).
    pub async fn read_response(&mut self) -> RawResponse {
        let (status, headers) = self.read_head().await;
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = response.header("content-length") {
            let len = len.parse().unwrap();
            response.body = self.read_exact(len).await;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.read_until(b"\r\n").await;
                let size_text = String::from_utf8(size_line).unwrap();
                let size =
                    usize::from_str_radix(size_text.trim().split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    self.read_until(b"\r\n").await;
                    break;
                }
                response.body.extend(self.read_exact(size).await);
                self.read_exact(2).await;
            }
        }
        response
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

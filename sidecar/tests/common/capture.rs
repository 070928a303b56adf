//! Raw HTTP/1.1 request captures (`tests/fixtures/sniff/*/*.http`): a request line, header
//! lines, an empty line and the body exactly as the client sent it, with a `Content-Length`
//! or chunked (de-chunked here, as hyper would hand it to the sidecar). Lines end in CRLF;
//! bare LF is accepted in the head and the chunk framing so hand edits do not break a file.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// One captured request.
#[derive(Debug, Clone)]
pub struct Capture {
    pub method: Method,
    /// The request target as sent (origin form).
    pub target: String,
    pub headers: HeaderMap,
    /// The body after transfer decoding.
    pub body: Vec<u8>,
    /// The file's bytes, for replaying the request as it was sent.
    pub raw: Vec<u8>,
}

impl Capture {
    pub fn load(path: &Path) -> Result<Capture, String> {
        let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Capture::parse(raw).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(raw: Vec<u8>) -> Result<Capture, String> {
        let mut rest = &raw[..];
        let request_line = take_line(&mut rest).ok_or("no request line")?;
        let request_line = std::str::from_utf8(request_line).map_err(|e| e.to_string())?;
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some("HTTP/1.1"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad request line {request_line:?}"));
        };
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        loop {
            let line = take_line(&mut rest).ok_or("the head does not end")?;
            if line.is_empty() {
                break;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| format!("bad header line {:?}", String::from_utf8_lossy(line)))?;
            let name = HeaderName::from_bytes(&line[..colon]).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|e| e.to_string())?;
            headers.append(name, value);
        }
        let chunked = headers.get_all("transfer-encoding").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
        let body = if chunked {
            dechunk(rest)?
        } else if let Some(len) = headers.get("content-length") {
            let len: usize = len
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse().ok())
                .ok_or("bad content-length")?;
            rest.get(..len)
                .ok_or_else(|| format!("content-length {len} but {} body bytes", rest.len()))?
                .to_vec()
        } else {
            // No framing: a bodyless request (a trailing newline in the file is not a body).
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                return Err("a body without content-length or chunked framing".into());
            }
            Vec::new()
        };
        Ok(Capture {
            method,
            target: target.to_owned(),
            headers,
            body,
            raw,
        })
    }
}

/// The next line without its CRLF (or LF); `None` at the end of input.
fn take_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let i = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..i];
    *rest = &rest[i + 1..];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// RFC 9112 §7.1: `size[;ext] CRLF data CRLF`, ending with a zero-size chunk and trailers.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = take_line(&mut rest).ok_or("chunked body ends without a last chunk")?;
        let size = std::str::from_utf8(line).map_err(|e| e.to_string())?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let data = rest.get(..size).ok_or("chunk shorter than its size")?;
        body.extend_from_slice(data);
        rest = &rest[size..];
        let end = take_line(&mut rest).ok_or("chunk without CRLF")?;
        if !end.is_empty() {
            return Err("chunk longer than its size".into());
        }
    }
}

/// Where the body's first JSON value ends, if it starts with one and it ends.
pub fn first_value_end(body: &[u8]) -> Option<usize> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if !matches!(body[first], b'{' | b'[') {
        return None;
    }
    let mut scan = aimux_sidecar::sniff::ValueEnd::default();
    (1..=body.len()).find(|&n| scan.feed(&body[n - 1..n]) != aimux_sidecar::sniff::Scan::More)
}

//! `builtin:echo`: answers every request with 200 and the request body, streamed back
//! unchanged as it arrives, plus the caller identity the gateway vouched for.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};

use super::DemoBody;

/// Header the gateway sets to the verified SPIFFE ID of the caller.
const IDENTITY: &str = "x-aimux-identity";

pub(super) fn handle(req: Request<Incoming>) -> Response<DemoBody> {
    let (parts, body) = req.into_parts();
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    if let Some(identity) = parts.headers.get(IDENTITY) {
        headers.insert(IDENTITY, identity.clone());
    }
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, content_type.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{} {}", parts.method, parts.uri)) {
        headers.insert("x-echo-request", value);
    }
    response
}

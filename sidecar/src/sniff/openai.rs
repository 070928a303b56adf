//! OpenAI-compatible APIs: the endpoint is the operation, the body's `model` the target, and
//! `"stream": true` asks for a streamed reply (the Python client sends
//! `Accept: application/json` either way, so only the body can tell).

use std::borrow::Cow;

use aimux_wire::{IntentFlags, Protocol};

use super::path::Path;
use super::{Body, Draft};

/// The endpoints with an intent, as `/v1/...` under any prefix (`/openai/v1/...`,
/// `/api/v1/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Chat,
    Responses,
    Embeddings,
    Completions,
}

impl Endpoint {
    fn operation(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Completions => "completions",
        }
    }
}

/// The endpoint a POST path names.
pub(super) fn endpoint(path: &Path<'_>) -> Option<Endpoint> {
    if let Some(["v1", "chat", "completions"]) = path.tail::<3>() {
        return Some(Endpoint::Chat);
    }
    match path.tail::<2>() {
        Some(["v1", "responses"]) => Some(Endpoint::Responses),
        Some(["v1", "embeddings"]) => Some(Endpoint::Embeddings),
        Some(["v1", "completions"]) => Some(Endpoint::Completions),
        _ => None,
    }
}

pub(super) fn intent<'a>(endpoint: Endpoint, body: &'a Body<'a>) -> Draft<'a> {
    let mut d = Draft::new(Protocol::OpenAi);
    d.operation = Cow::Borrowed(endpoint.operation());
    let probe = body.probe();
    d.target = probe
        .and_then(|p| p.model.as_deref())
        .map_or(Cow::Borrowed(""), Cow::Borrowed);
    // Embeddings have no streaming mode; a `stream` key there means nothing.
    if endpoint != Endpoint::Embeddings && probe.is_some_and(|p| p.stream == Some(true)) {
        d.flags = d.flags.union(IntentFlags::STREAMING);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_under_any_prefix() {
        let e = |p: &str| endpoint(&Path::new(p));
        assert_eq!(e("/v1/chat/completions"), Some(Endpoint::Chat));
        assert_eq!(e("/api/v1/chat/completions?x=1"), Some(Endpoint::Chat));
        assert_eq!(e("/v1/completions"), Some(Endpoint::Completions));
        assert_eq!(e("/openai/v1/responses"), Some(Endpoint::Responses));
        assert_eq!(e("/v1/embeddings/"), Some(Endpoint::Embeddings));
        assert_eq!(e("/chat/completions"), None);
        assert_eq!(e("/v1/responses/resp_1"), None);
        assert_eq!(e("/v2/chat/completions"), None);
    }
}

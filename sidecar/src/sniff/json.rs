//! One pass over a JSON body prefix that records the few fields the sniffer needs and skips
//! everything else.
//!
//! The body is parsed, not prefix-matched: JSON key order is not fixed (a2a-sdk writes
//! `method` and `params` before `id` and `jsonrpc`; other clients put `model` after a long
//! `messages` array), keys may be escaped (`"meth\u006fd"`), and a string may contain
//! anything. serde_json drives
//! visitors that write each field into a [`Probe`] *as soon as it is parsed*, so a body cut by
//! the look-ahead still yields every field that came before the cut. Skipped values go
//! through [`IgnoredAny`], which allocates nothing (serde_json keeps one small nesting stack
//! per parse); recorded strings are borrowed from the body unless they contain escapes.
//!
//! Duplicate keys: the last one wins, as in the JSON parsers of the Python and TypeScript
//! SDKs, so the sniffer reads the request the server will act on.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

use super::fields::{
    Flag, Key, KeySeed, MessageSkill, Params, Skill, Text, drain_seq, ignore_other_types,
};

/// A string field, as far as the body revealed it.
pub(super) type Field<'de> = Option<Cow<'de, str>>;

/// The fields the sniffer looks at. JSON-RPC: `jsonrpc`, `method`, `params.{name, uri, ref,
/// message.metadata, metadata}`; OpenAI: `model`, `stream`; A2A REST: `message.metadata`
/// (0.3: `request.metadata`) and `metadata` at the top level.
#[derive(Debug, Default)]
pub(super) struct Probe<'de> {
    pub(super) jsonrpc: Field<'de>,
    pub(super) method: Field<'de>,
    pub(super) model: Field<'de>,
    pub(super) stream: Option<bool>,
    /// `params.name`.
    pub(super) name: Field<'de>,
    /// `params.uri`.
    pub(super) uri: Field<'de>,
    /// `params.ref.name` and `params.ref.uri` (MCP `completion/complete`).
    pub(super) ref_name: Field<'de>,
    pub(super) ref_uri: Field<'de>,
    /// `params.message.metadata["aimux.skill"]` and `params.metadata["aimux.skill"]`.
    pub(super) params_message_skill: Field<'de>,
    pub(super) params_skill: Field<'de>,
    /// The same keys at the top level (the A2A REST binding's `SendMessageRequest`; its
    /// message is `request` in 0.3).
    pub(super) message_skill: Field<'de>,
    pub(super) skill: Field<'de>,
    /// The body is an array (a JSON-RPC batch); the fields are its first element's.
    pub(super) batch: bool,
    /// The object (or the batch's first element) was read to its end.
    finished: bool,
}

/// How far the parse got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parsed {
    /// The first value (the first request of a batch) was read whole.
    Whole,
    /// The prefix ended inside the value, and it is not the whole body: the probe holds what
    /// came before the cut.
    Cut,
    /// Not valid JSON (or cut although the prefix is the whole body): the probe holds what came
    /// before the error.
    Invalid,
}

/// Parses the first JSON value of `body`. Bytes after it are not looked at: the look-ahead
/// may stop there, and a server rejects trailing garbage itself.
pub(super) fn parse(body: &[u8], complete: bool) -> (Probe<'_>, Parsed) {
    let mut probe = Probe::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Top {
        probe: &mut probe,
        nested: false,
    }
    .deserialize(&mut de);
    let parsed = match result {
        _ if probe.finished => Parsed::Whole,
        Ok(()) => Parsed::Whole,
        Err(e) if e.classify() == Category::Eof && !complete => Parsed::Cut,
        Err(_) => Parsed::Invalid,
    };
    (probe, parsed)
}

/// The top-level value: a request object, or a batch whose first element is one.
struct Top<'p, 'de> {
    probe: &'p mut Probe<'de>,
    /// Inside a batch: an array here is not a request.
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for Top<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }
    ignore_other_types!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.probe;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Jsonrpc => p.jsonrpc = map.next_value_seed(Text)?,
                Key::Method => p.method = map.next_value_seed(Text)?,
                Key::Model => p.model = map.next_value_seed(Text)?,
                Key::Stream => p.stream = map.next_value_seed(Flag)?,
                Key::Params => map.next_value_seed(Params { probe: &mut *p })?,
                // A2A REST `SendMessageRequest`: the message is `message` in 1.0 and
                // `request` in 0.3 (a2a-sdk's 0.3 compat transport, captured).
                Key::Message | Key::Request => map.next_value_seed(MessageSkill {
                    slot: &mut p.message_skill,
                })?,
                Key::Metadata => map.next_value_seed(Skill { slot: &mut p.skill })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        p.finished = true;
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.nested {
            return drain_seq(seq);
        }
        // JSON-RPC 2.0 §6: a batch is an array of requests. The first one decides the hint
        // (flag `batch`); the rest is not read, so serde_json's complaint about the unread
        // elements is ignored by `parse` once `finished` is set.
        self.probe.batch = true;
        seq.next_element_seed(Top {
            probe: &mut *self.probe,
            nested: true,
        })?;
        self.probe.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::text::MAX_TEXT;
    use super::*;

    fn s<'a>(f: &'a Field<'_>) -> Option<&'a str> {
        f.as_deref()
    }

    #[test]
    fn records_fields_in_any_order_and_skips_the_rest() {
        let body = br#"{"params":{"arguments":{"name":"inner","x":[1,{"uri":"no"}]},
            "_meta":{"progressToken":1},"name":"get_weather"},"id":3,
            "method":"tools/call","jsonrpc":"2.0"}"#;
        let (p, parsed) = parse(body, true);
        assert_eq!(parsed, Parsed::Whole);
        assert_eq!(s(&p.method), Some("tools/call"));
        assert_eq!(s(&p.jsonrpc), Some("2.0"));
        assert_eq!(s(&p.name), Some("get_weather"));
        assert_eq!(s(&p.uri), None);
        assert!(!p.batch);
    }

    #[test]
    fn escaped_keys_and_values_are_unescaped() {
        let (p, _) = parse(br#"{"meth\u006fd":"tools\/call","model":"gpt-4o"}"#, true);
        assert_eq!(s(&p.method), Some("tools/call"));
        assert!(matches!(p.model, Some(Cow::Borrowed("gpt-4o"))));
    }

    #[test]
    fn a_cut_body_keeps_what_came_before_the_cut() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"a long"#;
        let (p, parsed) = parse(body, false);
        assert_eq!(parsed, Parsed::Cut);
        assert_eq!(s(&p.model), Some("gpt-4o"));
        // The same bytes as a whole body are invalid.
        assert_eq!(parse(body, true).1, Parsed::Invalid);
        // A string cut in the middle is not recorded at all.
        let (p, parsed) = parse(br#"{"method":"tools/ca"#, false);
        assert_eq!((s(&p.method), parsed), (None, Parsed::Cut));
        // Nested fields seen before the cut are kept.
        let body = br#"{"method":"SendMessage","params":{"message":{"metadata":{"aimux.skill":"sum"},"parts":[{"text":"x"#;
        let (p, parsed) = parse(body, false);
        assert_eq!(parsed, Parsed::Cut);
        assert_eq!(s(&p.params_message_skill), Some("sum"));
    }

    #[test]
    fn the_last_duplicate_wins_and_wrong_types_read_as_absent() {
        let (p, _) = parse(
            br#"{"method":"tools/list","method":"tools/call","params":{"name":"a"},"params":{"uri":"u"}}"#,
            true,
        );
        assert_eq!(s(&p.method), Some("tools/call"));
        assert_eq!((s(&p.name), s(&p.uri)), (None, Some("u")));
        let (p, parsed) = parse(
            br#"{"method":7,"model":{"a":[1]},"stream":"yes","params":[1,2]}"#,
            true,
        );
        assert_eq!(parsed, Parsed::Whole);
        assert_eq!((s(&p.method), s(&p.model), p.stream), (None, None, None));
        let (p, _) = parse(br#"{"stream":true}"#, true);
        assert_eq!(p.stream, Some(true));
    }

    #[test]
    fn a_batch_is_described_by_its_first_request() {
        let (p, parsed) = parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"method":"x"#,
            false,
        );
        assert_eq!(parsed, Parsed::Whole);
        assert!(p.batch);
        assert_eq!((s(&p.method), s(&p.name)), (Some("tools/call"), Some("a")));
        let (p, parsed) = parse(b"[]", true);
        assert_eq!((p.batch, parsed), (true, Parsed::Whole));
        let (p, parsed) = parse(b"[[{\"method\":\"ping\"}]]", true);
        assert_eq!((s(&p.method), parsed), (None, Parsed::Whole));
    }

    #[test]
    fn skills_and_completion_references() {
        let (p, _) = parse(
            br#"{"message":{"metadata":{"other":1,"aimux.skill":"a"}},"metadata":{"aimux.skill":"b"},
                "params":{"ref":{"type":"ref/prompt","name":"p"},"metadata":{"aimux.skill":"c"}}}"#,
            true,
        );
        assert_eq!(s(&p.message_skill), Some("a"));
        assert_eq!(s(&p.skill), Some("b"));
        assert_eq!(s(&p.params_skill), Some("c"));
        assert_eq!(s(&p.ref_name), Some("p"));
    }

    #[test]
    fn long_escaped_strings_are_copied_bounded() {
        let body = format!(r#"{{"model":"\u0041{}"}}"#, "b".repeat(10_000));
        let (p, _) = parse(body.as_bytes(), true);
        assert_eq!(p.model.map(|m| m.len()), Some(MAX_TEXT + 4));
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion() {
        let body = format!(
            r#"{{"x":{}1{},"method":"ping"}}"#,
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let (p, parsed) = parse(body.as_bytes(), true);
        assert_eq!((s(&p.method), parsed), (Some("ping"), Parsed::Whole));
    }
}

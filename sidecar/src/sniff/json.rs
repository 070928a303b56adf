//! One pass over a JSON body prefix that records the few fields the sniffer needs and skips
//! everything else.
//!
//! The body is parsed, not prefix-matched: JSON key order is not fixed (the OpenAI Python
//! client writes `messages` before `model`, a2a-sdk writes `jsonrpc` last), keys may be
//! escaped (`"meth\u006fd"`), and a string may contain anything. serde_json drives
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

use super::text::MAX_TEXT;

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

/// Object keys the visitors care about; everything else is [`Key::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Jsonrpc,
    Method,
    Params,
    Model,
    Stream,
    Name,
    Uri,
    Ref,
    Message,
    Request,
    Metadata,
    Skill,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "jsonrpc" => Key::Jsonrpc,
            "method" => Key::Method,
            "params" => Key::Params,
            "model" => Key::Model,
            "stream" => Key::Stream,
            "name" => Key::Name,
            "uri" => Key::Uri,
            "ref" => Key::Ref,
            "message" => Key::Message,
            "request" => Key::Request,
            "metadata" => Key::Metadata,
            // The AIMux skill convention (sidecar/INTENTS.md).
            "aimux.skill" => Key::Skill,
            _ => Key::Other,
        })
    }
}

/// Reads the rest of a map or sequence that is not the shape a field should have.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods for values of the wrong type: consume and record nothing.
macro_rules! ignore_other_types {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
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

/// `params`: the JSON-RPC request parameters. A later `params` replaces an earlier one.
struct Params<'p, 'de> {
    probe: &'p mut Probe<'de>,
}

impl<'de> DeserializeSeed<'de> for Params<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let p = &mut *self.probe;
        (p.name, p.uri, p.ref_name, p.ref_uri) = (None, None, None, None);
        (p.params_message_skill, p.params_skill) = (None, None);
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Params<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request parameters")
    }
    ignore_other_types!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.probe;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Name => p.name = map.next_value_seed(Text)?,
                Key::Uri => p.uri = map.next_value_seed(Text)?,
                Key::Ref => map.next_value_seed(Ref { probe: &mut *p })?,
                Key::Message => map.next_value_seed(MessageSkill {
                    slot: &mut p.params_message_skill,
                })?,
                Key::Metadata => map.next_value_seed(Skill {
                    slot: &mut p.params_skill,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `params.ref` of MCP `completion/complete`: `{"type":"ref/prompt","name":...}` or
/// `{"type":"ref/resource","uri":...}`.
struct Ref<'p, 'de> {
    probe: &'p mut Probe<'de>,
}

impl<'de> DeserializeSeed<'de> for Ref<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        (self.probe.ref_name, self.probe.ref_uri) = (None, None);
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Ref<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a completion reference")
    }
    ignore_other_types!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Name => self.probe.ref_name = map.next_value_seed(Text)?,
                Key::Uri => self.probe.ref_uri = map.next_value_seed(Text)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An A2A `Message`: only its `metadata` matters.
struct MessageSkill<'s, 'de> {
    slot: &'s mut Field<'de>,
}

impl<'de> DeserializeSeed<'de> for MessageSkill<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        *self.slot = None;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSkill<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }
    ignore_other_types!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == Key::Metadata {
                map.next_value_seed(Skill {
                    slot: &mut *self.slot,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A metadata object: only the key `aimux.skill` matters.
struct Skill<'s, 'de> {
    slot: &'s mut Field<'de>,
}

impl<'de> DeserializeSeed<'de> for Skill<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        *self.slot = None;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skill<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metadata")
    }
    ignore_other_types!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == Key::Skill {
                *self.slot = map.next_value_seed(Text)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A string value; any other type reads as absent.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    ignore_other_types!(None);
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'de>, E> {
        Ok(Some(Cow::Borrowed(s)))
    }
    /// A string with escapes, unescaped by serde_json into its scratch buffer: copied, but
    /// only as much as can be carried (plus a little, so an over-long value is still seen to
    /// be one and flagged when it is cut).
    fn visit_str<E>(self, s: &str) -> Result<Field<'de>, E> {
        Ok(Some(Cow::Owned(
            super::text::prefix(s, MAX_TEXT + 4).to_owned(),
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        drain_map(map).map(|()| None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        drain_seq(seq).map(|()| None)
    }
}

/// A boolean value (`stream`); any other type reads as absent.
struct Flag;

impl<'de> DeserializeSeed<'de> for Flag {
    type Value = Option<bool>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flag {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Option<bool>, E> {
        Ok(Some(b))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<bool>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<bool>, A::Error> {
        drain_map(map).map(|()| None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<bool>, A::Error> {
        drain_seq(seq).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
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

//! The visitors of the fields the sniffer records (`json.rs` drives them): each writes its
//! value into the [`Probe`] as soon as it is parsed, and reads a value of the wrong type as
//! absent, consuming it without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::{Field, Probe};
use super::text::MAX_TEXT;

/// Object keys the visitors care about; everything else is [`Key::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
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

pub(super) struct KeySeed;

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
pub(super) fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

pub(super) fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
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
pub(super) use ignore_other_types;

/// The parts every object visitor shares: a value that is not an object is consumed as
/// absent; the visitor first clears what it records (a later duplicate key replaces an
/// earlier one), then reads the object's keys in `visit_map`.
macro_rules! object_visitor {
    ($ty:ident, $what:literal, reset($this:ident) $reset:block, visit_map($v:ident, $map:ident) $body:block) => {
        impl<'de> DeserializeSeed<'de> for $ty<'_, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                let $this = self;
                $reset
                d.deserialize_any($this)
            }
        }

        impl<'de> Visitor<'de> for $ty<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            ignore_other_types!(());
            fn visit_str<E>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
                drain_seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<(), A::Error> {
                let $v = self;
                $body
            }
        }
    };
}

/// `params`: the JSON-RPC request parameters. A later `params` replaces an earlier one.
pub(super) struct Params<'p, 'de> {
    pub(super) probe: &'p mut Probe<'de>,
}

object_visitor! {
    Params, "request parameters",
    reset(this) {
        let p = &mut *this.probe;
        (p.name, p.uri, p.ref_name, p.ref_uri) = (None, None, None, None);
        (p.params_message_skill, p.params_skill) = (None, None);
    },
    visit_map(this, map) {
        let p = this.probe;
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

object_visitor! {
    Ref, "a completion reference",
    reset(this) {
        (this.probe.ref_name, this.probe.ref_uri) = (None, None);
    },
    visit_map(this, map) {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Name => this.probe.ref_name = map.next_value_seed(Text)?,
                Key::Uri => this.probe.ref_uri = map.next_value_seed(Text)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An A2A `Message`: only its `metadata` matters.
pub(super) struct MessageSkill<'s, 'de> {
    pub(super) slot: &'s mut Field<'de>,
}

object_visitor! {
    MessageSkill, "a message",
    reset(this) {
        *this.slot = None;
    },
    visit_map(this, map) {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == Key::Metadata {
                map.next_value_seed(Skill {
                    slot: &mut *this.slot,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A metadata object: only the key `aimux.skill` matters.
pub(super) struct Skill<'s, 'de> {
    pub(super) slot: &'s mut Field<'de>,
}

object_visitor! {
    Skill, "metadata",
    reset(this) {
        *this.slot = None;
    },
    visit_map(this, map) {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == Key::Skill {
                *this.slot = map.next_value_seed(Text)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A string value; any other type reads as absent.
pub(super) struct Text;

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
pub(super) struct Flag;

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

//! Where the first JSON value of a body ends, found incrementally as chunks arrive: the
//! look-ahead of a body of unknown length stops there instead of waiting for more.
//!
//! Only brackets and strings are tracked (depth, inside a string, after a backslash), which
//! is enough to find the end of a well-formed value; the parser judges validity later.

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The value goes on.
    More,
    /// The first value ended.
    End,
    /// The body does not start with `{` or `[`: there is no JSON request to wait for.
    NotJson,
}

/// The scanner's state between chunks.
#[derive(Debug, Clone, Default)]
pub struct ValueEnd {
    state: State,
    depth: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Before the first byte that is not whitespace.
    #[default]
    Start,
    Value,
    String,
    Escape,
    End,
    NotJson,
}

impl ValueEnd {
    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Scan {
        for &b in chunk {
            self.state = match (self.state, b) {
                (State::End | State::NotJson, _) => break,
                // RFC 8259 §2: insignificant whitespace.
                (State::Start, b' ' | b'\t' | b'\n' | b'\r') => State::Start,
                (State::Start, b'{' | b'[') => {
                    self.depth = 1;
                    State::Value
                }
                (State::Start, _) => State::NotJson,
                (State::Value, b'"') => State::String,
                (State::Value, b'{' | b'[') => {
                    self.depth = self.depth.saturating_add(1);
                    State::Value
                }
                (State::Value, b'}' | b']') => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        State::End
                    } else {
                        State::Value
                    }
                }
                (State::Value, _) => State::Value,
                (State::String, b'\\') => State::Escape,
                (State::String, b'"') => State::Value,
                (State::String, _) | (State::Escape, _) => State::String,
            };
        }
        match self.state {
            State::End => Scan::End,
            State::NotJson => Scan::NotJson,
            _ => Scan::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(body: &[u8], piece: usize) -> Option<usize> {
        let mut v = ValueEnd::default();
        let mut fed = 0;
        for chunk in body.chunks(piece) {
            fed += chunk.len();
            if v.feed(chunk) != Scan::More {
                return Some(fed);
            }
        }
        None
    }

    #[test]
    fn finds_the_end_of_the_first_value_across_chunks() {
        let body = br#" {"a":"}]\"{","b":[{"c":[]}]}{"next":1}"#;
        for piece in 1..body.len() {
            let fed = scan_in_pieces(body, piece).unwrap();
            assert!(fed >= 29 && fed < 29 + piece, "piece {piece}: {fed}");
        }
        assert_eq!(scan_in_pieces(b"[1,[2]]", 100), Some(7));
        assert_eq!(scan_in_pieces(br#"{"a":"\\"}"#, 1), Some(10));
    }

    #[test]
    fn unfinished_values_and_non_json_bodies() {
        assert_eq!(scan_in_pieces(br#"{"a":"}"#, 3), None);
        assert_eq!(scan_in_pieces(b"   ", 1), None);
        assert_eq!(scan_in_pieces(b"  PK\x03\x04", 1), Some(3));
        assert_eq!(scan_in_pieces(b"\"str\"", 1), Some(1));
    }
}

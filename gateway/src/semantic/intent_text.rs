//! Intent hint → the words a matcher compares with a route's example intents.
//!
//! Hints are identifiers (`tools/call analyze_q3_budget`, `SendMessage`, `gpt-4o-mini`);
//! examples are plain language (`analyze budget`). Both matchers do better on words, so the
//! hint is split into lower-case words first.
//!
//! Which parts go in was measured with all-MiniLM-L6-v2 against the examples "analyze
//! budget" / "forecast revenue" (cosine of the best example):
//!
//! | text | score |
//! |---|---|
//! | `mcp tools call analyze q3 budget` | 0.606 |
//! | `tools call analyze q3 budget` | 0.685 |
//! | `analyze q3 budget` | 0.781 |
//! | `mcp tools call project sales next quarter` | 0.335 |
//! | `project sales next quarter` | 0.439 |
//!
//! while unrelated tools stayed as low without the boilerplate (`get weather` 0.184 vs
//! `mcp tools call get weather` 0.092 — both far below any match). The protocol name and a
//! generic "invoke" operation only dilute the meaning, so they are left out.

/// Operations that only say "invoke the thing the target names": with a target present they
/// add no meaning (see the module comment for the measurement). Any other operation keeps
/// its words (`resources/subscribe`, `DELETE`, `chat`), as does an operation without target.
const CARRIER_OPERATIONS: &[(&str, &str)] = &[
    ("mcp", "tools/call"),
    ("mcp", "prompts/get"),
    ("mcp", "resources/read"),
    ("mcp", "completion/complete"),
    ("a2a", "SendMessage"),
    ("a2a", "SendStreamingMessage"),
];

/// The text a matcher embeds for the hint `protocol operation target` (empty parts are
/// absent): the target's words, preceded by the operation's unless the operation is a
/// generic invocation (`mcp tools/call`, `a2a SendMessage`, ...). The protocol is never
/// included.
///
/// `("mcp", "tools/call", "analyze_q3_budget")` → `"analyze q3 budget"`;
/// `("a2a", "SendMessage", "")` → `"send message"`;
/// `("http", "DELETE", "/accounts/42")` → `"delete accounts"`.
pub fn intent_text(protocol: &str, operation: &str, target: &str) -> String {
    let carrier = CARRIER_OPERATIONS
        .iter()
        .any(|&(p, o)| p == protocol && o == operation);
    let mut out = Vec::new();
    // A carrier's words would only dilute the target's; without a target they are all
    // there is.
    if !carrier || target.trim().is_empty() {
        out.extend(words(operation));
    }
    out.extend(words(target));
    out.join(" ")
}

/// [`intent_text`] of an envelope's intent hint.
pub fn intent_text_of(intent: &aimux_wire::Intent) -> String {
    intent_text(intent.protocol.as_str(), &intent.operation, &intent.target)
}

/// Splits an identifier into lower-case words: at every character that is not a letter or
/// digit (`_ - / . :` and the rest), and at case changes (`SendMessage` → send message,
/// `HTTPServer` → http server, `getV2Data` → get v2 data). Letters and digits stay together
/// (`q3`, `4o`), since those are names. Words made only of digits are dropped: in hints they
/// are ids and versions (`/orders/42`, `gpt-3.5`), noise to both matchers.
pub(crate) fn words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    for chunk in s.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = chunk.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1], chars[i]);
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let boundary = cur.is_uppercase()
                && (prev.is_lowercase()
                    || prev.is_numeric()
                    || (prev.is_uppercase() && next_lower));
            if boundary {
                push_word(&mut words, &chars[start..i]);
                start = i;
            }
        }
        push_word(&mut words, &chars[start..]);
    }
    words
}

fn push_word(words: &mut Vec<String>, chars: &[char]) {
    if chars.is_empty() || chars.iter().all(|c| c.is_numeric()) {
        return;
    }
    words.push(chars.iter().collect::<String>().to_lowercase());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_identifiers_into_lower_case_words() {
        assert_eq!(words("analyze_q3_budget"), ["analyze", "q3", "budget"]);
        assert_eq!(words("SendMessage"), ["send", "message"]);
        assert_eq!(words("sendMessage"), ["send", "message"]);
        assert_eq!(words("HTTPServer"), ["http", "server"]);
        assert_eq!(words("getV2Data"), ["get", "v2", "data"]);
        assert_eq!(words("gpt-4o-mini"), ["gpt", "4o", "mini"]);
        assert_eq!(words("a.b:c/d-e_f"), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(
            words("file:///reports/q3.csv"),
            ["file", "reports", "q3", "csv"]
        );
        assert_eq!(words("/orders/42"), ["orders"]);
        assert_eq!(
            words("reset a user's password"),
            ["reset", "a", "user", "s", "password"]
        );
        assert!(words("").is_empty());
        assert!(words("__/--").is_empty());
    }

    #[test]
    fn carrier_operations_give_way_to_the_target() {
        assert_eq!(
            intent_text("mcp", "tools/call", "analyze_q3_budget"),
            "analyze q3 budget"
        );
        assert_eq!(
            intent_text("mcp", "tools/call", "projectSalesNextQuarter"),
            "project sales next quarter"
        );
        assert_eq!(intent_text("a2a", "SendMessage", "summarize"), "summarize");
        assert_eq!(
            intent_text("mcp", "resources/read", "file:///budget/q3.csv"),
            "file budget q3 csv"
        );
    }

    #[test]
    fn other_operations_keep_their_words() {
        assert_eq!(
            intent_text("openai", "chat", "gpt-4o-mini"),
            "chat gpt 4o mini"
        );
        assert_eq!(
            intent_text("http", "DELETE", "/accounts/42"),
            "delete accounts"
        );
        assert_eq!(
            intent_text("mcp", "resources/subscribe", "file:///x"),
            "resources subscribe file x"
        );
        assert_eq!(intent_text("tcp", "postgres", ""), "postgres");
        // A carrier without target is all there is to go on.
        assert_eq!(intent_text("a2a", "SendMessage", ""), "send message");
        assert_eq!(intent_text("mcp", "tools/call", "  "), "tools call");
        // The carrier list is per protocol: `tools/call` over plain HTTP is a path.
        assert_eq!(intent_text("http", "tools/call", "x"), "tools call x");
        assert_eq!(intent_text("unknown", "", ""), "");
    }

    #[test]
    fn of_a_wire_intent() {
        let intent =
            aimux_wire::Intent::new(aimux_wire::Protocol::Mcp, "tools/call", "reset_password");
        assert_eq!(intent_text_of(&intent), "reset password");
    }
}

//! Semantic routing: the choice among semantic routes for a request no rule route takes.
//! Wraps the matcher (`crate::semantic`) with the gateway's view: route indices, the text
//! an intent becomes, and an operator-readable reason when nothing is chosen.

use aimux_wire::Intent;

/// The semantic routes of one configuration snapshot and the matcher that scores them.
#[derive(Debug, Default)]
pub(crate) struct SemanticRouter {}

impl SemanticRouter {
    /// The text an intent is compared as.
    pub(crate) fn text_of(&self, intent: Option<&Intent>) -> String {
        intent
            .map(|i| format!("{} {}", i.operation, i.target))
            .unwrap_or_default()
    }

    /// The chosen route index among `candidates`, or why none is.
    pub(crate) fn choose(&self, _text: &str, _candidates: &[usize]) -> Result<usize, String> {
        Err("not wired yet".to_owned())
    }
}

//! Semantic routing: an intent no rule route matches goes to the route whose example
//! intents (`intents = ["analyze budget", "forecast revenue"]` in `mesh.toml`) are nearest
//! in meaning, if the best route is near enough and clearly ahead of the runner-up.
//!
//! ```text
//! intent hint ─intent_text()─▶ words ─embed─▶ cosine per example
//!     ─max per route─▶ decide_scores(min_score, margin) ─▶ SemanticDecision
//! ```

mod decision;
mod intent_text;

pub use decision::{RouteScore, SemanticDecision, Thresholds, decide_scores};
pub use intent_text::{intent_text, intent_text_of};

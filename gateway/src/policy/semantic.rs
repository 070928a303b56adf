//! Semantic routing as the gateway uses it: the matcher (`crate::semantic`) over the
//! semantic routes of one configuration snapshot, asked only about the candidates whose
//! conditions a request meets, with a reason operators can read when nothing is chosen.

use std::collections::HashMap;

use aimux_wire::Intent;

use super::route::Router;
use crate::semantic::{
    RouteScore, SemanticConfig, SemanticDecision, SemanticError, SemanticMatcher, SemanticRoute,
    decide_scores, intent_text_of,
};

/// The semantic routes of one snapshot and the matcher that scores them.
#[derive(Debug)]
pub(crate) struct SemanticRouter {
    matcher: SemanticMatcher,
    /// Route index → label (`finance` or `#3`), for reasons.
    labels: HashMap<usize, String>,
}

impl SemanticRouter {
    /// Embeds every semantic route's examples (loading the model if one is configured).
    /// `None` when no route has examples.
    pub(crate) fn new(
        config: &SemanticConfig,
        router: &Router,
    ) -> Result<Option<Self>, SemanticError> {
        let routes: Vec<SemanticRoute> = router
            .semantic_routes()
            .map(|(route, examples)| SemanticRoute {
                route,
                examples: examples.to_vec(),
            })
            .collect();
        if routes.is_empty() {
            return Ok(None);
        }
        let labels = router
            .labelled()
            .enumerate()
            .map(|(i, (label, _))| (i, label.to_string()))
            .collect();
        let matcher = SemanticMatcher::new(config, routes)?;
        Ok(Some(Self { matcher, labels }))
    }

    /// What the matcher runs on, for the startup log.
    pub(crate) fn backend(&self) -> &str {
        self.matcher.backend()
    }

    /// The text an intent is compared as (empty without a hint).
    pub(crate) fn text_of(&self, intent: Option<&Intent>) -> String {
        intent.map(intent_text_of).unwrap_or_default()
    }

    /// The route among `candidates` nearest in meaning to `text`, or why there is none.
    /// Runs the model on a cache miss: call it off the async workers.
    pub(crate) fn choose(&self, text: &str, candidates: &[usize]) -> Result<usize, String> {
        if text.trim().is_empty() {
            return Err("the request has no intent words to compare with route examples".into());
        }
        let scores: Vec<RouteScore> = self
            .matcher
            .scores(text)
            .map_err(|e| format!("scoring failed: {e}"))?
            .into_iter()
            .filter(|s| candidates.contains(&s.route))
            .collect();
        let t = self.matcher.thresholds();
        let label = |i: usize| self.labels.get(&i).map_or("?", String::as_str);
        match decide_scores(&scores, t) {
            SemanticDecision::Matched { route, .. } => Ok(route),
            SemanticDecision::BelowMinimum { best_route, score } => Err(format!(
                "`{text}` is nearest to route {} but scores {score:.2}, below the minimum {:.2}",
                label(best_route),
                t.min_score
            )),
            SemanticDecision::Ambiguous {
                first,
                second,
                score,
                runner_up,
            } => Err(format!(
                "`{text}` is as near to route {} ({score:.2}) as to route {} ({runner_up:.2}); \
                 the margin is {:.2}",
                label(first),
                label(second),
                t.margin
            )),
            SemanticDecision::EmptyIntent => {
                Err("the request has no intent words to compare with route examples".into())
            }
            _ => Err("no semantic route applies".into()),
        }
    }
}

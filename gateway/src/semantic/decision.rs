//! The decision rule: per-route scores → a route, or a typed reason for "no route".

use std::cmp::Ordering;

/// When the best route is good enough: its score must reach `min_score` and beat the
/// runner-up route by at least `margin`. The two backends score on different scales, so
/// each has its own defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The lowest score that can route.
    pub min_score: f32,
    /// How far the best route must lead the runner-up.
    pub margin: f32,
}

impl Thresholds {
    /// Defaults for all-MiniLM-L6-v2 cosines, with the examples "analyze budget" / "forecast
    /// revenue" (finance) and "reset a user's password" / "unlock an account" (accounts):
    ///
    /// - the weakest genuine match measured, `project sales next quarter` → finance, scores
    ///   0.439; clear ones score 0.6–0.9 (`analyze q3 budget` 0.781, `reset password` 0.882);
    /// - 27 of 28 unrelated tool names (`get weather`, `send email`, `list files`, `search
    ///   web`, ...) scored at most 0.295 (`send email`), most below 0.2;
    ///
    /// so 0.35 sits in the gap. The 28th, `get forecast` (meant: the weather), scores 0.592
    /// for finance: a word of its examples with another sense. No threshold fixes that; a
    /// rule route for the weather tool does, since rule routes are tried first. Genuine matches lead the other route by 0.44 or more, while
    /// words that belong to both routes tie closely (`account analysis` 0.430 vs 0.396,
    /// `unlock revenue` 0.520 vs 0.498): a margin of 0.05 refuses those and nothing else
    /// measured.
    pub const MINILM: Thresholds = Thresholds {
        min_score: 0.35,
        margin: 0.05,
    };

    /// Defaults for the lexical matcher (TF-IDF cosine over stemmed words, see
    /// `lexical.rs`). With words of equal weight the score is k/√(n·m) for k shared words
    /// between texts of n and m words: one shared word of two on each side gives 0.5, one of
    /// three against two 0.41; most of the words shared gives 0.6–1. Measured with
    /// tool-like examples: matches 0.61–1.0 (`forecast q3 revenue by region` 0.613,
    /// `analyze q3 budget` 0.739, `password reset` 0.862); a single stray shared word
    /// 0.29–0.47 (`get weather forecast` 0.340, `analyze image` 0.433, `next page` 0.306).
    /// A wrong route is worse than none (the caller then answers "no route" plainly), so
    /// 0.55 asks for more than a single shared word. Lexical scores move in coarse steps,
    /// hence a wider margin than MiniLM's: `user budget` (0.544 vs 0.452) is a tie.
    pub const LEXICAL: Thresholds = Thresholds {
        min_score: 0.55,
        margin: 0.1,
    };
}

/// One route's score: the best cosine between the intent and the route's examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteScore {
    /// The gateway's route index.
    pub route: usize,
    /// The score (higher is nearer).
    pub score: f32,
}

/// What the matcher decided for one intent.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SemanticDecision {
    /// Route to `route`.
    Matched {
        /// The gateway's route index.
        route: usize,
        /// Its score.
        score: f32,
        /// The next best route's score, if there is another route.
        runner_up: Option<f32>,
    },
    /// No route scored `min_score`; `best_route` came nearest.
    BelowMinimum {
        /// The best route.
        best_route: usize,
        /// Its score.
        score: f32,
    },
    /// The two best routes are within `margin` of each other: too close to pick one.
    Ambiguous {
        /// The best route.
        first: usize,
        /// The runner-up.
        second: usize,
        /// The best route's score.
        score: f32,
        /// The runner-up's score.
        runner_up: f32,
    },
    /// No route lists example intents.
    NoRoutes,
    /// The intent has no words to compare (no hint, or only ids and punctuation).
    EmptyIntent,
}

/// Applies `thresholds` to per-route scores. Equal scores keep their order in `scores`
/// (the routes' file order, as for rule routes: the first wins), which only matters with a
/// zero margin. A NaN score counts as the lowest possible.
pub fn decide_scores(scores: &[RouteScore], thresholds: Thresholds) -> SemanticDecision {
    let mut ranked: Vec<RouteScore> = scores
        .iter()
        .map(|s| RouteScore {
            route: s.route,
            score: if s.score.is_nan() {
                f32::NEG_INFINITY
            } else {
                s.score
            },
        })
        .collect();
    // Stable sort: ties stay in file order.
    ranked.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
    let Some(best) = ranked.first().copied() else {
        return SemanticDecision::NoRoutes;
    };
    let second = ranked.get(1).copied();
    if best.score < thresholds.min_score {
        return SemanticDecision::BelowMinimum {
            best_route: best.route,
            score: best.score,
        };
    }
    match second {
        Some(second) if best.score - second.score < thresholds.margin => {
            SemanticDecision::Ambiguous {
                first: best.route,
                second: second.route,
                score: best.score,
                runner_up: second.score,
            }
        }
        _ => SemanticDecision::Matched {
            route: best.route,
            score: best.score,
            runner_up: second.map(|s| s.score),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        min_score: 0.35,
        margin: 0.05,
    };

    fn scores(list: &[(usize, f32)]) -> Vec<RouteScore> {
        list.iter()
            .map(|&(route, score)| RouteScore { route, score })
            .collect()
    }

    #[test]
    fn a_clear_winner_is_matched() {
        assert_eq!(
            decide_scores(&scores(&[(0, 0.2), (3, 0.78), (5, 0.1)]), T),
            SemanticDecision::Matched {
                route: 3,
                score: 0.78,
                runner_up: Some(0.2)
            }
        );
    }

    #[test]
    fn a_single_route_has_no_runner_up() {
        assert_eq!(
            decide_scores(&scores(&[(7, 0.5)]), T),
            SemanticDecision::Matched {
                route: 7,
                score: 0.5,
                runner_up: None
            }
        );
    }

    #[test]
    fn below_the_minimum_names_the_nearest_route() {
        assert_eq!(
            decide_scores(&scores(&[(0, 0.18), (1, 0.3)]), T),
            SemanticDecision::BelowMinimum {
                best_route: 1,
                score: 0.3
            }
        );
        // The minimum itself is enough.
        assert!(matches!(
            decide_scores(&scores(&[(0, 0.35)]), T),
            SemanticDecision::Matched { route: 0, .. }
        ));
    }

    #[test]
    fn close_scores_are_ambiguous() {
        assert_eq!(
            decide_scores(&scores(&[(0, 0.43), (1, 0.40)]), T),
            SemanticDecision::Ambiguous {
                first: 0,
                second: 1,
                score: 0.43,
                runner_up: 0.40
            }
        );
        // A lead of the margin or more routes.
        assert!(matches!(
            decide_scores(&scores(&[(0, 0.40), (1, 0.50)]), T),
            SemanticDecision::Matched { route: 1, .. }
        ));
    }

    #[test]
    fn ties_keep_file_order_and_nan_loses() {
        let zero_margin = Thresholds {
            min_score: 0.0,
            margin: 0.0,
        };
        assert!(matches!(
            decide_scores(&scores(&[(4, 0.5), (2, 0.5)]), zero_margin),
            SemanticDecision::Matched { route: 4, .. }
        ));
        assert!(matches!(
            decide_scores(&scores(&[(0, f32::NAN), (1, 0.6)]), T),
            SemanticDecision::Matched { route: 1, .. }
        ));
    }

    #[test]
    fn no_scores_no_routes() {
        assert_eq!(decide_scores(&[], T), SemanticDecision::NoRoutes);
    }
}

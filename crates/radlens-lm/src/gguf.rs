//! Opening GGUF files and reading LLaMA hyper-parameters from their metadata.

use crate::error::{candle_message, LmError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Architectures (`general.architecture`) whose tensors and metadata follow the LLaMA layout.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// An open GGUF file: parsed header and metadata, tensors read on demand.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    /// Opens and parses the header of a GGUF file; errors name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| LmError::Io {
            path: path.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let invalid = |reason: String| LmError::InvalidGguf {
            path: path.clone(),
            reason,
        };
        // candle's reader panics on some hostile headers (a `general.alignment` of 0 divides
        // by zero); such a file is invalid, not a crash.
        let content =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)))
                .map_err(|_| invalid("the GGUF header reader failed (malformed header)".into()))?
                .map_err(|e| invalid(candle_message(&e)))?;
        Ok(Self {
            path,
            content,
            reader,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw metadata value for `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn metadata_error(&self, key: &str, reason: impl Into<String>) -> LmError {
        LmError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.metadata(key)
            .ok_or_else(|| self.metadata_error(key, "missing"))
    }

    /// A required string metadata value.
    pub fn string(&self, key: &str) -> Result<&str> {
        self.required(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| self.metadata_error(key, candle_message(&e)))
    }

    /// A required unsigned integer metadata value (any integer width).
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.required(key)?;
        let n = match v {
            Value::U8(x) => Some(*x as i128),
            Value::I8(x) => Some(*x as i128),
            Value::U16(x) => Some(*x as i128),
            Value::I16(x) => Some(*x as i128),
            Value::U32(x) => Some(*x as i128),
            Value::I32(x) => Some(*x as i128),
            Value::U64(x) => Some(*x as i128),
            Value::I64(x) => Some(*x as i128),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            self.metadata_error(key, format!("expected a non-negative integer, got {v:?}"))
        })
    }

    /// A required floating-point metadata value.
    pub fn f64(&self, key: &str) -> Result<f64> {
        match self.required(key)? {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            v => Err(self.metadata_error(key, format!("expected a float, got {v:?}"))),
        }
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self
            .required(key)?
            .to_vec()
            .map_err(|e| self.metadata_error(key, candle_message(&e)))?;
        arr.iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|e| self.metadata_error(key, candle_message(&e)))
            })
            .collect()
    }

    /// Whether the file holds a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads the quantized tensor `name` onto `device`.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let err = |reason: String| LmError::Tensor {
            path: self.path.clone(),
            name: name.to_string(),
            reason,
        };
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Err(err("missing from the file".to_string()));
        };
        // candle multiplies the dimensions unchecked; a hostile index overflows them.
        let dims = info.shape.dims();
        if dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .is_none()
        {
            return Err(err(format!(
                "shape {dims:?} has more elements than fit in memory"
            )));
        }
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| err(candle_message(&e)))
    }
}

/// Hyper-parameters of a LLaMA-family model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// Number of transformer blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Residual-stream width (`llama.embedding_length`).
    pub hidden_size: usize,
    /// MLP inner width (`llama.feed_forward_length`).
    pub intermediate_size: usize,
    /// Query heads (`llama.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads (`llama.attention.head_count_kv`).
    pub n_kv_heads: usize,
    /// Per-head width (`hidden_size / n_heads`).
    pub head_dim: usize,
    /// RoPE base (`llama.rope.freq_base`, default 10 000).
    pub rope_freq_base: f64,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_norm_eps: f64,
    /// Maximum sequence length (`llama.context_length`).
    pub context_length: usize,
}

impl LlamaConfig {
    /// Reads and validates the hyper-parameters of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let unsupported = |reason: String| LmError::Unsupported {
            path: gguf.path().to_path_buf(),
            reason,
        };
        let architecture = gguf.string("general.architecture")?.to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(unsupported(format!(
                "architecture `{architecture}` (supported: {})",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        let key = |k: &str| format!("{architecture}.{k}");
        if gguf.metadata(&key("expert_count")).is_some() && gguf.usize(&key("expert_count"))? > 1 {
            return Err(unsupported("mixture-of-experts models".to_string()));
        }
        let n_layers = gguf.usize(&key("block_count"))?;
        let hidden_size = gguf.usize(&key("embedding_length"))?;
        let intermediate_size = gguf.usize(&key("feed_forward_length"))?;
        let n_heads = gguf.usize(&key("attention.head_count"))?;
        let n_kv_heads = gguf.usize(&key("attention.head_count_kv"))?;
        let context_length = gguf.usize(&key("context_length"))?;
        let rms_norm_eps = gguf.f64(&key("attention.layer_norm_rms_epsilon"))?;
        let rope_freq_base = match gguf.metadata(&key("rope.freq_base")) {
            Some(_) => gguf.f64(&key("rope.freq_base"))?,
            None => 10_000.0,
        };
        if n_layers == 0 || n_heads == 0 || n_kv_heads == 0 || context_length == 0 {
            return Err(unsupported(
                "block_count, head counts and context_length must be positive".to_string(),
            ));
        }
        if hidden_size % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(unsupported(format!(
                "hidden size {hidden_size} / {n_heads} query heads / {n_kv_heads} KV heads do not divide evenly"
            )));
        }
        let head_dim = hidden_size / n_heads;
        let rope_dim = match gguf.metadata(&key("rope.dimension_count")) {
            Some(_) => gguf.usize(&key("rope.dimension_count"))?,
            None => head_dim,
        };
        if rope_dim != head_dim {
            return Err(unsupported(format!(
                "partial rotary embeddings (rope dimension {rope_dim} != head dim {head_dim})"
            )));
        }
        Ok(Self {
            architecture,
            n_layers,
            hidden_size,
            intermediate_size,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_freq_base,
            rms_norm_eps,
            context_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header with no tensors and one metadata entry: `general.alignment` = 0.
    fn zero_alignment_gguf() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata entries
        let key = b"general.alignment";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(4u32.to_le_bytes()); // U32
        b.extend(0u32.to_le_bytes());
        b
    }

    #[test]
    fn tensor_shape_overflowing_usize_is_an_error_not_a_panic() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes()); // tensors
        b.extend(0u64.to_le_bytes()); // metadata entries
        b.extend(1u64.to_le_bytes());
        b.push(b't');
        b.extend(2u32.to_le_bytes()); // dimensions
        b.extend((1u64 << 40).to_le_bytes());
        b.extend((1u64 << 40).to_le_bytes());
        b.extend(0u32.to_le_bytes()); // F32
        b.extend(0u64.to_le_bytes()); // offset
        b.resize(96, 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("overflow.gguf");
        std::fs::write(&p, b).unwrap();
        let mut gguf = GgufFile::open(&p).unwrap();
        let Err(e) = gguf.tensor("t", &Device::Cpu) else {
            panic!("a shape that overflows usize must be refused");
        };
        let e = e.to_string();
        assert!(e.contains("more elements than fit"), "{e}");
    }

    #[test]
    fn zero_alignment_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("align0.gguf");
        std::fs::write(&p, zero_alignment_gguf()).unwrap();
        let e = GgufFile::open(&p).err().expect("invalid").to_string();
        assert!(e.contains("align0.gguf"), "{e}");
    }
}

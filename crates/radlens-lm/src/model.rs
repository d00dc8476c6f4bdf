//! A LLaMA-family decoder loaded from GGUF, with hook points on the residual stream.

use crate::cache::KvCache;
use crate::error::{LmError, Result};
use crate::gguf::{GgufFile, LlamaConfig};
use crate::hooks::{HookContext, HookPoint, Hooks};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use std::path::Path;
use std::sync::Arc;

/// How the matrix weights of the model are held and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Dequantized once at load time to f32 (the exact GGUF weight values); matmuls run in
    /// f32 with full-precision activations. About 4 bytes per parameter; fast on any CPU.
    #[default]
    F32,
    /// Kept in the GGUF's quantized formats; each matmul quantizes its activations to 8
    /// bits (llama.cpp / candle-transformers numerics). Several times less memory, but
    /// slow where candle has no SIMD kernel for the format (e.g. Q4_1 without AVX at build time).
    Quantized,
}

impl WeightFormat {
    fn matmul(self, weight: QTensor) -> Result<QMatMul> {
        let dense = matches!(
            weight.dtype(),
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        );
        Ok(if dense || self == WeightFormat::F32 {
            QMatMul::Tensor(weight.dequantize(&weight.device())?)
        } else {
            QMatMul::QTensor(Arc::new(weight))
        })
    }
}

#[derive(Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn new(weight: QTensor, eps: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: weight.dequantize(device)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }
}

#[derive(Clone)]
struct Block {
    attn_norm: RmsNorm,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: RmsNorm,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// Rotary-embedding tables and attention geometry shared by all blocks.
#[derive(Clone)]
struct Attention {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
}

impl Attention {
    fn new(cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..cfg.head_dim)
            .step_by(2)
            .map(|i| 1f32 / (cfg.rope_freq_base as f32).powf(i as f32 / cfg.head_dim as f32))
            .collect();
        let n_freq = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, n_freq), device)?;
        let positions = Tensor::arange(0u32, cfg.context_length as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((cfg.context_length, 1))?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Self {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// Splits `(tokens, heads * head_dim)` into `(1, heads, tokens, head_dim)`.
    fn heads(&self, x: &Tensor, n_heads: usize) -> Result<Tensor> {
        let t = x.dim(0)?;
        Ok(x.reshape((1, t, n_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Interleaved (GGUF LLaMA) rotary embedding at absolute positions `start..`.
    fn rope(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        Ok(candle_nn::rotary_emb::rope_i(x, &cos, &sin)?)
    }

    fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let n_rep = self.n_heads / self.n_kv_heads;
        if n_rep == 1 {
            return Ok(x);
        }
        let (b, h, t, d) = x.dims4()?;
        Ok(Tensor::cat(&vec![&x; n_rep], 2)?.reshape((b, h * n_rep, t, d))?)
    }

    /// Self-attention of block `layer` for `x` at positions `cache.position()..`,
    /// appending its keys and values to `cache`.
    fn forward(
        &self,
        block: &Block,
        layer: usize,
        cache: &mut KvCache,
        x: &Tensor,
    ) -> Result<Tensor> {
        let t = x.dim(0)?;
        let start = cache.position();
        let q = self.rope(&self.heads(&block.wq.forward(x)?, self.n_heads)?, start)?;
        let k = self.rope(&self.heads(&block.wk.forward(x)?, self.n_kv_heads)?, start)?;
        let v = self.heads(&block.wv.forward(x)?, self.n_kv_heads)?;
        let (k, v) = cache.append(layer, k, v)?;
        let k = self.repeat_kv(k)?;
        let v = self.repeat_kv(v)?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = if t > 1 {
            att.broadcast_add(&causal_mask(t, start, x.device())?)?
        } else {
            att
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y
            .transpose(1, 2)?
            .reshape((t, self.n_heads * self.head_dim))?;
        Ok(block.wo.forward(&y)?)
    }
}

/// Additive mask `(tokens, start + tokens)`: `-inf` where a query would see a later key.
fn causal_mask(t: usize, start: usize, device: &Device) -> Result<Tensor> {
    let kv = start + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..kv).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (t, kv), device)?)
}

/// A LLaMA-family decoder (GGUF weights) whose residual stream can be read and edited
/// through [`Hooks`] at [`HookPoint::ResidPre`] / [`HookPoint::ResidPost`] of every block.
///
/// The model is immutable once loaded: the state of a sequence lives in a [`KvCache`]
/// that the caller passes to each call, so one model (e.g. behind an `Arc`) can run any
/// number of sequences at once, from any number of threads.
#[derive(Clone)]
pub struct HookedLlama {
    config: LlamaConfig,
    device: Device,
    embeddings: Tensor,
    blocks: Vec<Block>,
    attention: Attention,
    final_norm: RmsNorm,
    lm_head: QMatMul,
}

impl HookedLlama {
    /// Loads a LLaMA-family GGUF model from `path` onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device, format: WeightFormat) -> Result<Self> {
        let mut gguf = GgufFile::open(path)?;
        Self::from_gguf(&mut gguf, device, format)
    }

    /// Builds the model from an already opened GGUF file.
    pub fn from_gguf(gguf: &mut GgufFile, device: &Device, format: WeightFormat) -> Result<Self> {
        let config = LlamaConfig::from_gguf(gguf)?;
        let embeddings_q = gguf.tensor("token_embd.weight", device)?;
        let embeddings = embeddings_q.dequantize(device)?;
        let hidden = embeddings.dim(1)?;
        if hidden != config.hidden_size {
            return Err(LmError::Tensor {
                path: gguf.path().to_path_buf(),
                name: "token_embd.weight".to_string(),
                reason: format!(
                    "width {hidden} does not match embedding_length {}",
                    config.hidden_size
                ),
            });
        }
        let lm_head = if gguf.has_tensor("output.weight") {
            format.matmul(gguf.tensor("output.weight", device)?)?
        } else if format == WeightFormat::F32 {
            // Tied input/output embeddings, already dequantized.
            QMatMul::Tensor(embeddings.clone())
        } else {
            format.matmul(embeddings_q)?
        };
        let final_norm = RmsNorm::new(
            gguf.tensor("output_norm.weight", device)?,
            config.rms_norm_eps,
            device,
        )?;
        let mut blocks = Vec::with_capacity(config.n_layers);
        for l in 0..config.n_layers {
            let mut q = |name: &str| -> Result<QTensor> {
                gguf.tensor(&format!("blk.{l}.{name}.weight"), device)
            };
            let eps = config.rms_norm_eps;
            blocks.push(Block {
                attn_norm: RmsNorm::new(q("attn_norm")?, eps, device)?,
                wq: format.matmul(q("attn_q")?)?,
                wk: format.matmul(q("attn_k")?)?,
                wv: format.matmul(q("attn_v")?)?,
                wo: format.matmul(q("attn_output")?)?,
                ffn_norm: RmsNorm::new(q("ffn_norm")?, eps, device)?,
                w_gate: format.matmul(q("ffn_gate")?)?,
                w_up: format.matmul(q("ffn_up")?)?,
                w_down: format.matmul(q("ffn_down")?)?,
            });
        }
        Ok(Self {
            attention: Attention::new(&config, device)?,
            config,
            device: device.clone(),
            embeddings,
            blocks,
            final_norm,
            lm_head,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty KV cache, to start a new sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// The logit lens of residual-stream directions `(n, hidden)`: each scaled by the final
    /// norm's gain and read through the output embedding, shape `(n, vocab)`. The norm's
    /// division by the residual's RMS is left out (it depends on the whole residual, not
    /// the direction), as in SAELens' `W_dec @ W_U` with the final norm folded in.
    pub fn unembed_directions(&self, directions: &Tensor) -> Result<Tensor> {
        let scaled = directions.broadcast_mul(&self.final_norm.weight)?;
        Ok(self.lm_head.forward(&scaled)?)
    }

    /// Feeds `tokens` after the sequence held in `cache`, running `hooks`, and returns the
    /// logits of every fed position, shape `(tokens, vocab)`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let x = self.residual_final(tokens, cache, hooks)?;
        Ok(self.lm_head.forward(&x)?)
    }

    /// Like [`HookedLlama::forward`] but only returns the last position's logits, shape `(vocab,)`.
    pub fn forward_last(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let x = self.residual_final(tokens, cache, hooks)?;
        let last = x.i((x.dim(0)? - 1)..)?;
        Ok(self.lm_head.forward(&last)?.squeeze(0)?)
    }

    /// Runs embeddings and all blocks, returns the final-normed residual `(tokens, hidden)`.
    /// A failed call leaves `cache` as it was, so the sequence can go on.
    fn residual_final(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        hooks.validate(self.config.n_layers)?;
        cache.check_layers(self.config.n_layers)?;
        self.check_tokens(cache.position(), tokens)?;
        match self.run_blocks(tokens, cache, hooks, None) {
            Ok(x) => {
                cache.advance(tokens.len());
                self.final_norm.forward(&x)
            }
            Err(e) => {
                cache.undo()?;
                Err(e)
            }
        }
    }

    /// Runs the blocks on `tokens` after the sequence in `cache` and returns the residual
    /// stream after the last block, or at `stop` (skipping the blocks after it).
    fn run_blocks(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        hooks: &mut Hooks,
        stop: Option<HookPoint>,
    ) -> Result<Tensor> {
        let ctx = HookContext {
            start: cache.position(),
            len: tokens.len(),
        };
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        for (l, block) in self.blocks.iter().enumerate() {
            x = hooks.apply(HookPoint::ResidPre(l), &ctx, x)?;
            if stop == Some(HookPoint::ResidPre(l)) {
                break;
            }
            let h = block.attn_norm.forward(&x)?;
            let x_mid = (self.attention.forward(block, l, cache, &h)? + &x)?;
            let h = block.ffn_norm.forward(&x_mid)?;
            let gate = candle_nn::ops::silu(&block.w_gate.forward(&h)?)?;
            let mlp = block.w_down.forward(&(gate * block.w_up.forward(&h)?)?)?;
            x = hooks.apply(HookPoint::ResidPost(l), &ctx, (mlp + x_mid)?)?;
            if stop == Some(HookPoint::ResidPost(l)) {
                break;
            }
        }
        Ok(x)
    }

    /// The residual stream at `point` for `tokens` as a new sequence, shape
    /// `(tokens, hidden)`, computing only the blocks up to `point` (activation harvesting).
    /// `hooks` run on the way. The keys and values go to a temporary cache: the blocks
    /// after `point` never run, so they could not continue the sequence anyway.
    pub fn residual_at(
        &self,
        tokens: &[u32],
        point: HookPoint,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        self.residual_after(&self.new_cache(), tokens, point, hooks)
    }

    /// Like [`HookedLlama::residual_at`] but for `tokens` continuing the sequence in
    /// `cache` (a shared prefix run once), which is left as it was.
    pub fn residual_after(
        &self,
        cache: &KvCache,
        tokens: &[u32],
        point: HookPoint,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        self.check_point(point)?;
        hooks.validate(self.config.n_layers)?;
        cache.check_layers(self.config.n_layers)?;
        self.check_tokens(cache.position(), tokens)?;
        self.run_blocks(tokens, &mut cache.clone(), hooks, Some(point))
    }

    /// Errors unless `point` is one of the model's hook points.
    pub fn check_point(&self, point: HookPoint) -> Result<()> {
        if point.layer() >= self.config.n_layers {
            return Err(LmError::HookOutOfRange {
                point: point.to_string(),
                n_layers: self.config.n_layers,
            });
        }
        Ok(())
    }

    /// Errors on an empty input, ids outside the vocabulary or an overlong sequence.
    fn check_tokens(&self, start: usize, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(LmError::InvalidArgument("no tokens to process".to_string()));
        }
        let vocab = self.embeddings.dim(0)?;
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(LmError::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        if start + tokens.len() > self.config.context_length {
            return Err(LmError::InvalidArgument(format!(
                "sequence of {} tokens exceeds the context length {}",
                start + tokens.len(),
                self.config.context_length
            )));
        }
        Ok(())
    }
}

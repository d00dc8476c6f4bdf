//! The attention keys and values of one sequence, owned by the caller so that one loaded
//! model can run many sequences at once.

use crate::error::{LmError, Result};
use crate::gguf::LlamaConfig;
use candle_core::Tensor;

/// The state of one sequence: each block's keys and values for the positions fed so far.
///
/// Every [`HookedLlama::forward`](crate::HookedLlama::forward) continues the sequence held
/// by the cache it is given; a new cache starts a new sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per block: keys and values `(1, kv_heads, position, head_dim)`; `None` while empty.
    layers: Vec<Option<(Tensor, Tensor)>>,
    position: usize,
}

impl KvCache {
    /// An empty cache for a model with `config`.
    pub fn new(config: &LlamaConfig) -> Self {
        Self {
            layers: vec![None; config.n_layers],
            position: 0,
        }
    }

    /// Number of tokens in the sequence so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Errors unless the cache has one entry per block of a model with `n_layers` blocks.
    pub(crate) fn check_layers(&self, n_layers: usize) -> Result<()> {
        if self.layers.len() != n_layers {
            return Err(LmError::InvalidArgument(format!(
                "the KV cache was made for a model with {} layers, this one has {n_layers}",
                self.layers.len()
            )));
        }
        Ok(())
    }

    /// Appends this call's keys and values to block `layer`'s and returns them all.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let kv = match &self.layers[layer] {
            Some((kc, vc)) => (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?),
            None => (k, v),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }

    /// Records that a call fed `len` more tokens to every block.
    pub(crate) fn advance(&mut self, len: usize) {
        self.position += len;
    }

    /// Drops what a failed call appended, so the sequence is as it was before the call.
    pub(crate) fn undo(&mut self) -> Result<()> {
        let len = self.position;
        for layer in &mut self.layers {
            *layer = match layer.take() {
                Some((k, v)) if len > 0 => Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?)),
                _ => None,
            };
        }
        Ok(())
    }
}

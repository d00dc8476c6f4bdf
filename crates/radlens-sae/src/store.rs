//! A reader of activation shards: `acts_XXXXX.safetensors` files, each with an f32
//! tensor "activations" (n, d), next to a `meta.json` `{d_model, layer, model}`.

use crate::{Result, SaeError};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `meta.json` of an activation store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub d_model: usize,
    pub layer: usize,
    pub model: String,
}

/// A directory of activation shards, read in file-name order.
#[derive(Clone, Debug)]
pub struct ActivationStore {
    pub meta: StoreMeta,
    shards: Vec<PathBuf>,
}

impl ActivationStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("meta.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| SaeError::io(&meta_path, e))?;
        let meta: StoreMeta = serde_json::from_str(&text).map_err(|source| SaeError::Json {
            path: meta_path,
            source,
        })?;
        let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| SaeError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("acts_") && n.ends_with(".safetensors"))
            })
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(SaeError::format(dir, "no acts_*.safetensors shards"));
        }
        Ok(Self { meta, shards })
    }

    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// Reads one shard, checking its width against `meta.json`.
    pub fn read_shard(&self, path: &Path) -> Result<Tensor> {
        let mut t = candle_core::safetensors::load(path, &Device::Cpu)?;
        let acts = t
            .remove("activations")
            .ok_or_else(|| SaeError::format(path, "no tensor \"activations\""))?;
        let (_, d) = acts.dims2().map_err(|_| {
            SaeError::format(
                path,
                format!(
                    "\"activations\" has shape {:?}, expected (n, d)",
                    acts.dims()
                ),
            )
        })?;
        if d != self.meta.d_model {
            return Err(SaeError::WidthMismatch {
                got: d,
                want: self.meta.d_model,
                context: format!(" (shard {} vs meta.json d_model)", path.display()),
            });
        }
        Ok(acts.to_dtype(DType::F32)?)
    }

    /// Batches of `batch_size` rows over all shards in order (the last may be shorter).
    pub fn batches(&self, batch_size: usize) -> Batches<'_> {
        Batches {
            store: self,
            batch_size: batch_size.max(1),
            next_shard: 0,
            pending: Vec::new(),
        }
    }
}

/// Iterator over the batches of an [`ActivationStore`].
pub struct Batches<'a> {
    store: &'a ActivationStore,
    batch_size: usize,
    next_shard: usize,
    /// Row blocks not yet yielded.
    pending: Vec<Tensor>,
}

impl Batches<'_> {
    fn pending_rows(&self) -> usize {
        self.pending.iter().map(|t| t.dims()[0]).sum()
    }

    fn take(&mut self) -> Result<Tensor> {
        let all = Tensor::cat(&self.pending, 0)?;
        let n = all.dims()[0].min(self.batch_size);
        let rest = all.narrow(0, n, all.dims()[0] - n)?;
        self.pending = if rest.dims()[0] > 0 {
            vec![rest]
        } else {
            Vec::new()
        };
        Ok(all.narrow(0, 0, n)?)
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pending_rows() < self.batch_size && self.next_shard < self.store.shards.len() {
            let path = &self.store.shards[self.next_shard];
            self.next_shard += 1;
            match self.store.read_shard(path) {
                Ok(t) => self.pending.push(t),
                Err(e) => return Some(Err(e)),
            }
        }
        (self.pending_rows() > 0).then(|| self.take())
    }
}

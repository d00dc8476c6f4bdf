//! Activation stores: a directory of `acts_XXXXX.safetensors` shards next to a `meta.json`
//! `{d_model, layer, model, hook, source, complete}`.
//!
//! Each shard holds an f32 tensor `activations` (n, d) and, when written with token
//! metadata, u32 tensors `token_ids`, `positions` (token index within its document) and
//! `doc_index` (n), plus safetensors metadata: `docs` (JSON list of the document ids the
//! rows point into), `token_text` (JSON list, one string per row) and `doc_range` (JSON
//! `[start, end)`: which documents of the producer's list the shard covers, for resuming).
//! Shards are written atomically, so a store interrupted mid-way holds only whole shards.

use crate::tokens::{kept_rows, TokenFilter};
use crate::{Result, Sae, SaeError};
use candle_core::{DType, Device, Tensor};
use radlens_core::atomic::write_atomic_at;
use radlens_core::results::write_json;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `meta.json` of an activation store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub d_model: usize,
    pub layer: usize,
    pub model: String,
    /// The hook point the activations were read at (e.g. `resid_post.15`).
    #[serde(default)]
    pub hook: Option<String>,
    /// How the producer made the store (opaque here; the harvester's settings).
    #[serde(default)]
    pub source: Option<serde_json::Value>,
    /// The tokens every context window started with before the stored tokens (run, not
    /// stored); `None` for stores that do not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_prefix: Option<ContextPrefix>,
    /// Whether the producer finished (false while a harvest is running or interrupted).
    #[serde(default = "default_complete")]
    pub complete: bool,
}

fn default_complete() -> bool {
    true
}

impl StoreMeta {
    /// Metadata of a finished store with no hook name or source description.
    pub fn new(d_model: usize, layer: usize, model: impl Into<String>) -> Self {
        Self {
            d_model,
            layer,
            model: model.into(),
            hook: None,
            source: None,
            context_prefix: None,
            complete: true,
        }
    }
}

/// The context prefix of a store's windows: its token ids and their text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextPrefix {
    pub ids: Vec<u32>,
    pub text: String,
}

/// Where one activation row comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Document (report) id.
    pub doc: String,
    /// Token index within the document.
    pub position: u32,
    pub token_id: u32,
    /// The token as text.
    pub text: String,
}

/// A shard's row count and safetensors metadata, read from its header alone.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    pub path: PathBuf,
    pub rows: usize,
    pub metadata: HashMap<String, String>,
}

impl ShardInfo {
    /// The `[start, end)` document range a harvester recorded, if any.
    pub fn doc_range(&self) -> Result<Option<(usize, usize)>> {
        self.metadata
            .get(DOC_RANGE_KEY)
            .map(|s| {
                serde_json::from_str(s).map_err(|e| {
                    SaeError::format(&self.path, format!("bad {DOC_RANGE_KEY} metadata: {e}"))
                })
            })
            .transpose()
    }
}

const ACTS: &str = "activations";
const DOC_RANGE_KEY: &str = "doc_range";

/// A directory of activation shards, read in file-name order.
#[derive(Clone, Debug)]
pub struct ActivationStore {
    pub meta: StoreMeta,
    dir: PathBuf,
    shards: Vec<ShardInfo>,
}

/// The file name of shard `index`.
pub fn shard_name(index: usize) -> String {
    format!("acts_{index:05}.safetensors")
}

fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.json")
}

impl ActivationStore {
    /// Opens a store, reading `meta.json` and every shard's header. A store must hold at
    /// least one shard and its producer must have finished; [`ActivationStore::open_partial`]
    /// accepts unfinished ones.
    pub fn open(dir: &Path) -> Result<Self> {
        let store = Self::open_partial(dir)?;
        if store.shards.is_empty() {
            return Err(SaeError::format(dir, "no acts_*.safetensors shards"));
        }
        if !store.meta.complete {
            return Err(SaeError::format(
                dir,
                "the store is incomplete (its harvest was interrupted): resume the harvest first",
            ));
        }
        Ok(store)
    }

    /// Opens a store that may be empty or unfinished (to resume writing it).
    pub fn open_partial(dir: &Path) -> Result<Self> {
        let path = meta_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| SaeError::io(&path, e))?;
        let meta: StoreMeta =
            serde_json::from_str(&text).map_err(|source| SaeError::Json { path, source })?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| SaeError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("acts_") && n.ends_with(".safetensors"))
            })
            .collect();
        paths.sort();
        let shards = paths
            .into_iter()
            .map(|p| read_shard_info(&p, meta.d_model))
            .collect::<Result<_>>()?;
        Ok(Self {
            meta,
            dir: dir.to_path_buf(),
            shards,
        })
    }

    /// Creates an empty store in `dir` (created if needed) with `meta.complete = false`.
    /// Errors if `dir` already holds a store.
    pub fn create(dir: &Path, meta: StoreMeta) -> Result<Self> {
        if meta_path(dir).exists() {
            return Err(SaeError::format(
                dir,
                "already holds an activation store (resume it or choose another --out)",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| SaeError::io(dir, e))?;
        let store = Self {
            meta: StoreMeta {
                complete: false,
                ..meta
            },
            dir: dir.to_path_buf(),
            shards: Vec::new(),
        };
        store.write_meta()?;
        Ok(store)
    }

    fn write_meta(&self) -> Result<()> {
        Ok(write_json(&meta_path(&self.dir), &self.meta)?)
    }

    /// Marks the store finished.
    pub fn finish(&mut self) -> Result<()> {
        self.meta.complete = true;
        self.write_meta()
    }

    /// Appends a shard of `activations` (n, d) with one [`TokenRecord`] per row, covering
    /// documents `doc_range` of the producer's list.
    pub fn append_shard(
        &mut self,
        activations: &Tensor,
        tokens: &[TokenRecord],
        doc_range: (usize, usize),
    ) -> Result<()> {
        let (n, d) = activations.dims2()?;
        if d != self.meta.d_model {
            return Err(SaeError::WidthMismatch {
                got: d,
                want: self.meta.d_model,
                context: format!(" (writing to the store {})", self.dir.display()),
            });
        }
        if tokens.len() != n {
            return Err(SaeError::Config(format!(
                "{n} activation rows but {} token records",
                tokens.len()
            )));
        }
        let mut docs: Vec<&str> = Vec::new();
        let mut doc_index = Vec::with_capacity(n);
        for t in tokens {
            if docs.last() != Some(&t.doc.as_str()) {
                docs.push(&t.doc);
            }
            doc_index.push((docs.len() - 1) as u32);
        }
        let u32s = |v: Vec<u32>| Tensor::from_vec(v, n, &Device::Cpu);
        let tensors = vec![
            (ACTS.to_string(), activations.to_dtype(DType::F32)?),
            (
                "token_ids".to_string(),
                u32s(tokens.iter().map(|t| t.token_id).collect())?,
            ),
            (
                "positions".to_string(),
                u32s(tokens.iter().map(|t| t.position).collect())?,
            ),
            ("doc_index".to_string(), u32s(doc_index)?),
        ];
        let json = |v: serde_json::Value| v.to_string();
        let texts: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        let metadata = HashMap::from([
            ("docs".to_string(), json(serde_json::json!(docs))),
            ("token_text".to_string(), json(serde_json::json!(texts))),
            (
                DOC_RANGE_KEY.to_string(),
                json(serde_json::json!([doc_range.0, doc_range.1])),
            ),
        ]);
        let path = self.dir.join(shard_name(self.shards.len()));
        write_atomic_at(&path, |tmp| {
            safetensors::serialize_to_file(tensors, Some(metadata), tmp)
                .map_err(|e| SaeError::format(&path, e.to_string()))
        })?;
        self.shards.push(read_shard_info(&path, d)?);
        Ok(())
    }

    /// Errors unless `sae` reads activations as wide as this store's.
    pub fn check_reader(&self, sae: &Sae) -> Result<()> {
        let want = sae.config().d_in;
        if want == self.meta.d_model {
            return Ok(());
        }
        Err(SaeError::WidthMismatch {
            got: self.meta.d_model,
            want,
            context: format!(
                " ({} holds activations of model {}, layer {})",
                self.dir.display(),
                self.meta.model,
                self.meta.layer
            ),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// Total number of activation rows.
    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }

    /// Reads one shard's activations (n, d) as f32.
    pub fn read_shard(&self, index: usize) -> Result<Tensor> {
        let (info, mut tensors) = self.load(index)?;
        activations(info, &mut tensors)
    }

    /// Reads one shard's activations and token records from one read of the file (errors
    /// if it was written without token records).
    pub fn read_shard_with_tokens(&self, index: usize) -> Result<(Tensor, Vec<TokenRecord>)> {
        let (info, mut tensors) = self.load(index)?;
        let acts = activations(info, &mut tensors)?;
        Ok((acts, token_records(info, &mut tensors)?))
    }

    /// One shard's activations, only the rows `filter` keeps (every row without one).
    pub fn read_shard_kept(&self, index: usize, filter: Option<&TokenFilter>) -> Result<Tensor> {
        let Some(filter) = filter else {
            return self.read_shard(index);
        };
        let (x, records) = self.read_shard_with_tokens(index)?;
        let positions: Vec<u32> = records.iter().map(|r| r.position).collect();
        kept_rows(&x, &filter.classes(&x, &positions)?)
    }

    /// One shard's header info and all its tensors.
    fn load(&self, index: usize) -> Result<(&ShardInfo, HashMap<String, Tensor>)> {
        let info = self.shard(index)?;
        Ok((
            info,
            candle_core::safetensors::load(&info.path, &Device::Cpu)?,
        ))
    }

    fn shard(&self, index: usize) -> Result<&ShardInfo> {
        self.shards.get(index).ok_or_else(|| {
            SaeError::format(
                &self.dir,
                format!("no shard {index} (the store has {})", self.shards.len()),
            )
        })
    }

    /// Batches of `batch_size` rows over all shards in order (the last may be shorter).
    pub fn batches(&self, batch_size: usize) -> Batches<'_> {
        Batches {
            store: self,
            batch_size: batch_size.max(1),
            next_shard: 0,
            pending: Vec::new(),
            filter: None,
        }
    }

    /// An endless stream of full batches for training: each epoch visits the shards in a
    /// seeded random order, loading up to `buffer_rows` rows at a time and shuffling them
    /// (when the whole store fits in the buffer it is read once and reshuffled each epoch).
    /// The stream is a function of `seed` alone, so a resumed run can skip what it used.
    pub fn shuffled_batches(
        &self,
        batch_size: usize,
        buffer_rows: usize,
        seed: u64,
    ) -> Result<ShuffledBatches<'_>> {
        if batch_size == 0 || batch_size > self.rows() {
            return Err(SaeError::Config(format!(
                "batch size {batch_size} must be between 1 and the store's {} rows",
                self.rows()
            )));
        }
        Ok(ShuffledBatches {
            store: self,
            batch_size,
            buffer_rows: buffer_rows.max(batch_size),
            seed,
            epoch: 0,
            order: Vec::new(),
            cached: None,
            ready: None,
            offset: 0,
            carry: None,
            chunk: 0,
            filter: None,
        })
    }
}

/// The activations (n, d) of a shard's `tensors`, as f32.
fn activations(info: &ShardInfo, tensors: &mut HashMap<String, Tensor>) -> Result<Tensor> {
    let acts = tensors
        .remove(ACTS)
        .ok_or_else(|| SaeError::format(&info.path, "no tensor \"activations\""))?;
    Ok(acts.to_dtype(DType::F32)?)
}

/// The token records of a shard's `tensors` (errors if it was written without them).
fn token_records(
    info: &ShardInfo,
    tensors: &mut HashMap<String, Tensor>,
) -> Result<Vec<TokenRecord>> {
    let path = &info.path;
    let bad = |r: String| SaeError::format(path, r);
    let meta_list = |key: &str| -> Result<Vec<String>> {
        let text = info
            .metadata
            .get(key)
            .ok_or_else(|| bad(format!("no {key} metadata (no token records)")))?;
        serde_json::from_str(text).map_err(|e| bad(format!("bad {key} metadata: {e}")))
    };
    let (docs, texts) = (meta_list("docs")?, meta_list("token_text")?);
    let mut column = |name: &str| -> Result<Vec<u32>> {
        let v = tensors
            .remove(name)
            .ok_or_else(|| bad(format!("no tensor \"{name}\"")))?
            .to_vec1::<u32>()?;
        if v.len() != info.rows {
            return Err(bad(format!(
                "\"{name}\" has {} rows, not {}",
                v.len(),
                info.rows
            )));
        }
        Ok(v)
    };
    let (ids, positions, doc_index) = (
        column("token_ids")?,
        column("positions")?,
        column("doc_index")?,
    );
    if texts.len() != info.rows {
        return Err(bad(format!(
            "{} token texts for {} rows",
            texts.len(),
            info.rows
        )));
    }
    (0..info.rows)
        .map(|i| {
            let doc = docs
                .get(doc_index[i] as usize)
                .ok_or_else(|| bad(format!("row {i} points past the document list")))?;
            Ok(TokenRecord {
                doc: doc.clone(),
                position: positions[i],
                token_id: ids[i],
                text: texts[i].clone(),
            })
        })
        .collect()
}

/// Reads a shard's header: row count (checking the width) and metadata.
fn read_shard_info(path: &Path, d_model: usize) -> Result<ShardInfo> {
    let bad = |r: String| SaeError::format(path, r);
    let mut f = std::fs::File::open(path).map_err(|e| SaeError::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("too short for a safetensors file".into()))?;
    let len = u64::from_le_bytes(len);
    let file_len = f.metadata().map_err(|e| SaeError::io(path, e))?.len();
    // Bounded by the file itself, so a short file cannot ask for a large buffer.
    if len > 100_000_000 || len > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "header of {len} bytes is not plausible in a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("truncated safetensors header".into()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("bad header: {e}")))?;
    let shape: Vec<usize> = header
        .get(ACTS)
        .and_then(|t| t.get("shape"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| bad("no tensor \"activations\"".into()))?;
    let [rows, d] = shape[..] else {
        return Err(bad(format!(
            "\"activations\" has shape {shape:?}, expected (n, d)"
        )));
    };
    if d != d_model {
        return Err(SaeError::WidthMismatch {
            got: d,
            want: d_model,
            context: format!(" (shard {} vs meta.json d_model)", path.display()),
        });
    }
    let metadata = header
        .get("__metadata__")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    Ok(ShardInfo {
        path: path.to_path_buf(),
        rows,
        metadata,
    })
}

/// Iterator over the batches of an [`ActivationStore`].
pub struct Batches<'a> {
    store: &'a ActivationStore,
    batch_size: usize,
    next_shard: usize,
    /// Row blocks not yet yielded.
    pending: Vec<Tensor>,
    filter: Option<TokenFilter>,
}

impl Batches<'_> {
    /// Only the rows `filter` keeps.
    pub fn filtered(self, filter: Option<TokenFilter>) -> Self {
        Self { filter, ..self }
    }

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
            let i = self.next_shard;
            self.next_shard += 1;
            match self.store.read_shard_kept(i, self.filter.as_ref()) {
                Ok(t) => self.pending.push(t),
                Err(e) => return Some(Err(e)),
            }
        }
        (self.pending_rows() > 0).then(|| self.take())
    }
}

/// The endless shuffled batch stream of [`ActivationStore::shuffled_batches`].
pub struct ShuffledBatches<'a> {
    store: &'a ActivationStore,
    batch_size: usize,
    buffer_rows: usize,
    seed: u64,
    epoch: u64,
    /// Shards of the current epoch not yet loaded, next last.
    order: Vec<usize>,
    /// The whole store, when it fits in the buffer.
    cached: Option<Tensor>,
    /// The shuffled chunk being cut into batches.
    ready: Option<Tensor>,
    offset: usize,
    /// Rows left over from the previous chunk (fewer than a batch).
    carry: Option<Tensor>,
    chunk: u64,
    filter: Option<TokenFilter>,
}

impl ShuffledBatches<'_> {
    /// Only the rows `filter` keeps.
    pub fn filtered(self, filter: Option<TokenFilter>) -> Self {
        Self { filter, ..self }
    }

    fn rng(&self, salt: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(
            self.seed ^ (self.epoch << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }

    /// Loads and shuffles the next chunk of rows (starting a new epoch when needed).
    fn refill(&mut self) -> Result<()> {
        let fits = self.store.rows() <= self.buffer_rows;
        if self.order.is_empty() {
            if self.chunk > 0 || self.cached.is_some() {
                self.epoch += 1;
            }
            let mut order: Vec<usize> = (0..self.store.shards.len()).collect();
            order.shuffle(&mut self.rng(0));
            self.order = order;
        }
        let mut parts: Vec<Tensor> = self.carry.take().into_iter().collect();
        if fits {
            if self.cached.is_none() {
                let all: Vec<Tensor> = (0..self.store.shards.len())
                    .map(|i| self.store.read_shard_kept(i, self.filter.as_ref()))
                    .collect::<Result<_>>()?;
                self.cached = Some(Tensor::cat(&all, 0)?);
            }
            self.order.clear();
            parts.extend(self.cached.clone());
        } else {
            let mut rows = 0;
            while rows < self.buffer_rows {
                let Some(i) = self.order.pop() else { break };
                let t = self.store.read_shard_kept(i, self.filter.as_ref())?;
                rows += t.dims()[0];
                parts.push(t);
            }
        }
        let chunk = Tensor::cat(&parts, 0)?;
        let n = chunk.dims()[0];
        let mut perm: Vec<u32> = (0..n as u32).collect();
        self.chunk += 1;
        let mut rng = self.rng(self.chunk);
        perm.shuffle(&mut rng);
        let perm = Tensor::from_vec(perm, n, &Device::Cpu)?;
        self.ready = Some(chunk.index_select(&perm, 0)?);
        self.offset = 0;
        Ok(())
    }
}

impl Iterator for ShuffledBatches<'_> {
    type Item = Result<Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ready) = &self.ready {
                let n = ready.dims()[0];
                if self.offset + self.batch_size <= n {
                    let batch = ready.narrow(0, self.offset, self.batch_size);
                    self.offset += self.batch_size;
                    return Some(batch.map_err(Into::into));
                }
                if self.offset < n {
                    match ready.narrow(0, self.offset, n - self.offset) {
                        Ok(rest) => self.carry = Some(rest),
                        Err(e) => return Some(Err(e.into())),
                    }
                }
                self.ready = None;
            }
            if let Err(e) = self.refill() {
                return Some(Err(e));
            }
        }
    }
}

//! The feature browser's data: SAE runs given with `--sae-run DIR`, each folder holding the
//! feature database `radlens sae features` wrote (`DIR/features.sqlite`), named in URLs by
//! the folder's name, and (for steering and decoder logits, with `--lm-model`) the SAE
//! itself as `radlens sae train` wrote it. A request names a run only by that key; no path
//! from it reaches the filesystem.

use crate::error::{Result, ServerError};
use crate::http_cache::{BlobCache, Entry};
use crate::steering::Lm;
use axum::body::Bytes;
use radlens_interp::decoder_logits::DecoderLogits;
use radlens_interp::feature_db::{Feature, FeatureDb};
use radlens_interp::feature_search::SearchHit;
use radlens_interp::steer::HookedSae;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The feature database's file name inside a run folder.
pub const FEATURE_DB: &str = "features.sqlite";

/// Most search hits of each kind.
pub const SEARCH_LIMIT: usize = 50;

/// Decoder logits kept in memory (each a few kB).
const LOGITS_CACHED: usize = 4096;

/// Feature pages (JSON) kept in memory per run.
const PAGE_CACHE_BYTES: usize = 32 << 20;

/// Whether a run's features can be steered and read through the unembedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LmLink {
    Ready { model: String, layer: usize },
    Unavailable { reason: String },
}

/// A run the browser can show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub latents: usize,
    pub lm: LmLink,
}

struct Run {
    db: Mutex<FeatureDb>,
    latents: usize,
    /// Feature pages as served, valid while the database's `data_version` is `version`.
    pages: BlobCache,
    version: Mutex<Option<i64>>,
    /// `--lm-model` and the run's SAE hooked into it, or why not.
    hooked: std::result::Result<(Arc<Lm>, HookedSae), String>,
}

/// The open feature databases by run name, and the language model they are steered with.
pub struct SaeRuns {
    runs: BTreeMap<String, Run>,
    logits: Mutex<HashMap<(String, usize), Arc<DecoderLogits>>>,
}

/// A run name is the folder's name: letters, digits, `.`, `_` and `-`, not starting with `.`.
fn run_name(dir: &std::path::Path) -> std::result::Result<String, String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "--sae-run {}: the folder's name ('{name}') names the run in URLs, so it must be letters, digits, '.', '_' or '-'",
            dir.display()
        ))
    }
}

impl SaeRuns {
    /// Open `DIR/features.sqlite` of every run folder and, given a model, hook each run's
    /// SAE into it (a run whose SAE does not fit is still browsable; the reason is shown).
    pub fn open(dirs: &[PathBuf], lm: Option<Lm>) -> std::result::Result<Self, String> {
        let lm = lm.map(Arc::new);
        let mut runs = BTreeMap::new();
        for dir in dirs {
            let name = run_name(dir)?;
            let db = FeatureDb::open(&dir.join(FEATURE_DB))
                .map_err(|e| format!("--sae-run {}: {e}", dir.display()))?;
            let hooked = match &lm {
                Some(lm) => lm.hook(dir, &db).map(|sae| (lm.clone(), sae)),
                None => {
                    Err("steering and decoder logits need `radlens serve --lm-model GGUF`".into())
                }
            };
            if let (Some(_), Err(why)) = (&lm, &hooked) {
                tracing::warn!(run = %name, "no steering or decoder logits: {why}");
            }
            let run = Run {
                latents: db.latents(),
                db: Mutex::new(db),
                pages: BlobCache::new(PAGE_CACHE_BYTES),
                version: Mutex::new(None),
                hooked,
            };
            if runs.insert(name.clone(), run).is_some() {
                return Err(format!(
                    "--sae-run: two runs are named '{name}' (rename one folder)"
                ));
            }
        }
        Ok(Self {
            runs,
            logits: Mutex::new(HashMap::new()),
        })
    }

    pub fn list(&self) -> Vec<RunInfo> {
        self.runs
            .iter()
            .map(|(name, r)| RunInfo {
                name: name.clone(),
                latents: r.latents,
                lm: match &r.hooked {
                    Ok((lm, sae)) => LmLink::Ready {
                        model: lm.name.clone(),
                        layer: sae.layer,
                    },
                    Err(reason) => LmLink::Unavailable {
                        reason: reason.clone(),
                    },
                },
            })
            .collect()
    }

    fn run(&self, run: &str) -> Result<&Run> {
        self.runs
            .get(run)
            .ok_or_else(|| ServerError::NotFound(format!("no SAE run '{}'", run.escape_debug())))
    }

    /// 404 unless `index` is one of `run`'s latents.
    fn check_index(&self, run: &str, index: usize) -> Result<&Run> {
        let r = self.run(run)?;
        if index >= r.latents {
            return Err(ServerError::NotFound(format!(
                "SAE run '{run}' has {} latents; no latent {index}",
                r.latents
            )));
        }
        Ok(r)
    }

    /// Latent `index` of `run` as JSON ([`Feature`]) with its entity tag, from memory
    /// unless the database changed since it was read; 404 for an unknown run or an index
    /// past its width. Blocking (may read the database).
    pub fn feature_page(&self, run: &str, index: usize) -> Result<Entry> {
        let r = self.check_index(run, index)?;
        let internal = |e: radlens_interp::InterpError| ServerError::Internal(e.to_string());
        let db = r.db.lock().unwrap_or_else(|p| p.into_inner());
        let now = Some(db.data_version().map_err(internal)?);
        {
            let mut seen = r.version.lock().unwrap_or_else(|p| p.into_inner());
            if *seen != now {
                r.pages.clear();
                *seen = now;
            }
        }
        if let Some(page) = r.pages.get(index as i64) {
            return Ok(page);
        }
        let f: Feature = db.feature(index).map_err(internal)?.ok_or_else(|| {
            ServerError::NotFound(format!("SAE run '{run}' has no latent {index}"))
        })?;
        Ok(r.pages
            .insert(index as i64, Bytes::from(serde_json::to_vec(&f)?)))
    }

    /// Latents of `run` whose concepts or top tokens contain `query`. Blocking.
    pub fn search(&self, run: &str, query: &str) -> Result<Vec<SearchHit>> {
        let db = self.run(run)?.db.lock().unwrap_or_else(|p| p.into_inner());
        db.search(query, SEARCH_LIMIT)
            .map_err(|e| ServerError::Internal(e.to_string()))
    }

    /// The model and hooked SAE of `run` for latent `index`; 409 with the reason when the
    /// run cannot be steered.
    pub fn hooked(&self, run: &str, index: usize) -> Result<(Arc<Lm>, HookedSae)> {
        self.check_index(run, index)?
            .hooked
            .clone()
            .map_err(|why| ServerError::Conflict(format!("SAE run '{run}': {why}")))
    }

    /// The decoder logits of latent `index` of `run`, computed once. Blocking.
    pub fn logits(&self, run: &str, index: usize) -> Result<Arc<DecoderLogits>> {
        let key = (run.to_string(), index);
        if let Some(l) = self.cache().get(&key) {
            return Ok(l.clone());
        }
        let (lm, sae) = self.hooked(run, index)?;
        let l = Arc::new(lm.logits(&sae, index)?);
        let mut cache = self.cache();
        if cache.len() >= LOGITS_CACHED {
            cache.clear();
        }
        cache.insert(key, l.clone());
        Ok(l)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, usize), Arc<DecoderLogits>>> {
        self.logits.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::run_name;
    use std::path::Path;

    #[test]
    fn run_names_are_url_safe_folder_names() {
        assert_eq!(
            run_name(Path::new("/runs/sae-l12_v2.1")).unwrap(),
            "sae-l12_v2.1"
        );
        for bad in ["/runs/..", "/runs/.hidden", "/runs/a b", "/runs/ä", "/"] {
            assert!(run_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}

//! The feature browser's data: SAE runs given with `--sae-run DIR`, each folder holding the
//! feature database `radlens sae features` wrote (`DIR/features.sqlite`), named in URLs by
//! the folder's name. A request names a run only by that key; no path from it reaches the
//! filesystem.

use crate::error::{Result, ServerError};
use radlens_interp::feature_db::{Feature, FeatureDb};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The feature database's file name inside a run folder.
pub const FEATURE_DB: &str = "features.sqlite";

/// A run the browser can show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub latents: usize,
}

/// The open feature databases by run name.
#[derive(Default)]
pub struct SaeRuns {
    runs: BTreeMap<String, Mutex<FeatureDb>>,
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
    /// Open `DIR/features.sqlite` of every run folder.
    pub fn open(dirs: &[PathBuf]) -> std::result::Result<Self, String> {
        let mut runs = BTreeMap::new();
        for dir in dirs {
            let name = run_name(dir)?;
            let db = FeatureDb::open(&dir.join(FEATURE_DB))
                .map_err(|e| format!("--sae-run {}: {e}", dir.display()))?;
            if runs.insert(name.clone(), Mutex::new(db)).is_some() {
                return Err(format!(
                    "--sae-run: two runs are named '{name}' (rename one folder)"
                ));
            }
        }
        Ok(Self { runs })
    }

    pub fn list(&self) -> Vec<RunInfo> {
        self.runs
            .iter()
            .map(|(name, db)| RunInfo {
                name: name.clone(),
                latents: db.lock().unwrap_or_else(|p| p.into_inner()).latents(),
            })
            .collect()
    }

    /// Latent `index` of `run`; 404 for an unknown run or an index past its width.
    /// Blocking (reads the database).
    pub fn feature(&self, run: &str, index: usize) -> Result<Feature> {
        let db = self
            .runs
            .get(run)
            .ok_or_else(|| ServerError::NotFound(format!("no SAE run '{}'", run.escape_debug())))?;
        let db = db.lock().unwrap_or_else(|p| p.into_inner());
        db.feature(index)
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .ok_or_else(|| {
                ServerError::NotFound(format!(
                    "SAE run '{run}' has {} latents; no latent {index}",
                    db.latents()
                ))
            })
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

//! Per-case results kept on disk, so that a long evaluation (`seg robustness` scores
//! each film 61 times per model) resumes where it stopped instead of starting over.
//!
//! Each case's results are one JSON file named by the case's position in the run,
//! holding the case id and the settings they were computed with. A file whose id or
//! settings differ, or that cannot be read, is recomputed, never reused: the settings
//! are everything that changes a result except the models' weights, which a resumed
//! run trusts to be unchanged.

use crate::error::Result;
use radlens_core::atomic::write_atomic;
use radlens_core::FileError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder of one run's per-case results.
pub struct CaseResults {
    dir: PathBuf,
    /// The run's settings as JSON text, compared byte for byte.
    settings: String,
}

#[derive(Serialize, Deserialize)]
struct CaseFile<T> {
    id: String,
    settings: String,
    result: T,
}

impl CaseResults {
    /// The results in `dir` of a run with `settings`.
    pub fn new(dir: impl Into<PathBuf>, settings: &impl Serialize) -> Result<Self> {
        let dir = dir.into();
        let settings = serde_json::to_string(settings)
            .map_err(|e| FileError::invalid(&dir, format!("settings not serialisable: {e}")))?;
        Ok(Self { dir, settings })
    }

    /// Removes every stored result (a run that does not resume starts clean).
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(FileError::new(&self.dir, e).into())
            }
            _ => Ok(()),
        }
    }

    fn path(&self, position: usize) -> PathBuf {
        self.dir.join(format!("{position:05}.json"))
    }

    /// The stored result of case `id` at `position`, if one was computed with these
    /// settings.
    pub fn load<T: DeserializeOwned>(&self, position: usize, id: &str) -> Option<T> {
        let bytes = std::fs::read(self.path(position)).ok()?;
        let file: CaseFile<T> = serde_json::from_slice(&bytes).ok()?;
        (file.id == id && file.settings == self.settings).then_some(file.result)
    }

    /// Stores the result of case `id` at `position` (atomically: an interrupted write
    /// leaves no partial file).
    pub fn save<T: Serialize>(&self, position: usize, id: &str, result: &T) -> Result<()> {
        let path = self.path(position);
        let file = CaseFile {
            id: id.to_string(),
            settings: self.settings.clone(),
            result,
        };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| FileError::invalid(&path, format!("result not serialisable: {e}")))?;
        write_atomic(&path, &bytes)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, seed: u64) -> CaseResults {
        CaseResults::new(dir.join("cases"), &("jsrt", seed)).unwrap()
    }

    #[test]
    fn reused_only_with_the_same_id_and_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let a = store(tmp.path(), 0);
        assert_eq!(a.load::<Vec<f64>>(3, "JPCLN001"), None);
        a.save(3, "JPCLN001", &vec![0.5, 0.25]).unwrap();
        assert_eq!(a.load(3, "JPCLN001"), Some(vec![0.5, 0.25]));
        assert_eq!(a.load::<Vec<f64>>(3, "JPCLN002"), None, "another case");
        assert_eq!(a.load::<Vec<f64>>(4, "JPCLN001"), None, "another position");
        let b = store(tmp.path(), 1);
        assert_eq!(b.load::<Vec<f64>>(3, "JPCLN001"), None, "other settings");
    }

    #[test]
    fn a_corrupt_file_is_recomputed_and_clear_removes_all() {
        let tmp = tempfile::tempdir().unwrap();
        let a = store(tmp.path(), 0);
        a.save(0, "x", &1.0f64).unwrap();
        std::fs::write(a.path(0), b"{\"id\":\"x\",\"sett").unwrap();
        assert_eq!(a.load::<f64>(0, "x"), None);
        a.save(0, "x", &2.0f64).unwrap();
        assert_eq!(a.load(0, "x"), Some(2.0f64));
        a.clear().unwrap();
        assert!(!a.dir().exists());
        a.clear().unwrap();
    }
}

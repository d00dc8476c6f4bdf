//! A run directory: the folder a training run writes its configuration, checkpoints and
//! logs into. A run is either started in an empty (or new) folder or resumed from one that
//! holds its marker file; radlens never mixes a new run into an old one's files.

use crate::FileError;
use std::path::{Path, PathBuf};

/// The folder of one run, identified by a marker file that exists once the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// Why a run directory cannot be used as asked.
#[derive(Debug)]
pub enum RunDirError {
    /// A new run was asked for, but the folder already holds one.
    AlreadyStarted {
        marker: PathBuf,
    },
    /// A resume was asked for, but the folder holds no run.
    NothingToResume {
        marker: PathBuf,
    },
    File(FileError),
}

impl std::fmt::Display for RunDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyStarted { marker } => write!(
                f,
                "{} already holds a run ({}): pass --resume to continue it or choose another --out",
                marker.parent().unwrap_or(marker).display(),
                marker.display()
            ),
            Self::NothingToResume { marker } => {
                write!(f, "nothing to resume: {} does not exist", marker.display())
            }
            Self::File(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunDirError {}

impl From<FileError> for RunDirError {
    fn from(e: FileError) -> Self {
        Self::File(e)
    }
}

impl RunDir {
    /// A handle on `root`, without checking anything (for reading a finished run).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Opens `root` for a new run (`resume` false: `marker` must not exist; the folder is
    /// created) or for resuming one (`resume` true: `marker` must exist).
    pub fn open(root: &Path, marker: &str, resume: bool) -> Result<Self, RunDirError> {
        let marker = root.join(marker);
        match (resume, marker.exists()) {
            (false, true) => Err(RunDirError::AlreadyStarted { marker }),
            (true, false) => Err(RunDirError::NothingToResume { marker }),
            (false, false) => {
                std::fs::create_dir_all(root).map_err(|e| FileError::new(root, e))?;
                Ok(Self::at(root))
            }
            (true, true) => Ok(Self::at(root)),
        }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file or folder inside the run.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.root.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_resumed_runs_are_never_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        assert!(matches!(
            RunDir::open(&root, "config.json", true),
            Err(RunDirError::NothingToResume { .. })
        ));
        let run = RunDir::open(&root, "config.json", false).unwrap();
        assert!(root.is_dir());
        std::fs::write(run.join("config.json"), "{}").unwrap();
        let err = RunDir::open(&root, "config.json", false).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        assert_eq!(RunDir::open(&root, "config.json", true).unwrap(), run);
    }
}

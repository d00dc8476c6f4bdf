use std::path::{Path, PathBuf};

/// A file operation that failed, naming the file.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(path: &Path, source: std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An error for content that was read but is not what it should be.
    pub fn invalid(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::new(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string()),
        )
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

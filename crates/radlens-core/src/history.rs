//! A training log (`history.csv`) keyed by a step or epoch number in its first column.
//! A resumed run keeps the rows before the point it resumes from and rewrites the rest,
//! so the log never holds rows from work that was thrown away.

use crate::atomic::write_atomic;
use crate::FileError;
use std::path::{Path, PathBuf};

/// The rows of a history file, saved atomically as a whole.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    header: String,
    rows: Vec<String>,
}

impl History {
    /// A new, empty history with `header` (comma-separated column names).
    pub fn new(path: &Path, header: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            header: header.to_string(),
            rows: Vec::new(),
        }
    }

    /// The history of a resumed run: the rows of `path` whose key (first field) is below
    /// `before`, under the file's own header; a new history with `header` when the file
    /// does not exist or `before` is 0.
    pub fn resume(path: &Path, header: &str, before: u64) -> Result<Self, FileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) if before > 0 => t,
            Ok(_) => return Ok(Self::new(path, header)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(path, header))
            }
            Err(e) => return Err(FileError::new(path, e)),
        };
        let mut lines = text.lines();
        let file_header = lines.next().unwrap_or(header).to_string();
        let rows = lines
            .filter(|l| Self::key(l).is_some_and(|k| k < before))
            .map(str::to_string)
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            header: file_header,
            rows,
        })
    }

    fn key(row: &str) -> Option<u64> {
        row.split(',').next()?.parse().ok()
    }

    /// Appends a row; its first field must be the key.
    pub fn push(&mut self, row: String) {
        self.rows.push(row);
    }

    /// The rows so far, without the header.
    pub fn rows(&self) -> &[String] {
        &self.rows
    }

    /// Writes the whole file atomically.
    pub fn save(&self) -> Result<(), FileError> {
        let mut text = format!("{}\n", self.header);
        for r in &self.rows {
            text.push_str(r);
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_keeps_rows_before_the_resume_point_and_the_files_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.csv");
        let mut h = History::new(&p, "epoch,loss");
        for e in 1..=4 {
            h.push(format!("{e},0.{e}"));
        }
        h.save().unwrap();
        let mut r = History::resume(&p, "ignored,header", 3).unwrap();
        assert_eq!(r.rows(), ["1,0.1", "2,0.2"]);
        r.push("3,0.9".into());
        r.save().unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "epoch,loss\n1,0.1\n2,0.2\n3,0.9\n"
        );
    }

    #[test]
    fn missing_file_or_fresh_start_gives_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.csv");
        assert!(History::resume(&p, "step", 10).unwrap().rows().is_empty());
        std::fs::write(&p, "step\n0\n5\n").unwrap();
        let h = History::resume(&p, "step,new", 0).unwrap();
        assert!(h.rows().is_empty());
        h.save().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "step,new\n");
    }

    #[test]
    fn unparsable_rows_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.csv");
        std::fs::write(&p, "step,x\n0,a\ngarbage\n1,b\n").unwrap();
        assert_eq!(
            History::resume(&p, "step,x", 9).unwrap().rows(),
            ["0,a", "1,b"]
        );
    }
}

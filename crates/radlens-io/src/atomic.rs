//! Write files so that a reader never sees a half-written one: write to a
//! temporary file in the same folder, then rename over the target.

use crate::error::{IoError, Result};
use std::io::Write;
use std::path::Path;

/// Atomically replace `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Atomically replace `path` with whatever `fill` writes into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    replace_with(path, |tmp| {
        fill(tmp.as_file_mut())?;
        tmp.as_file_mut().sync_all()
    })
}

/// Atomically replace `path` with the file `fill` writes at the temporary path it is given
/// (an existing empty file), for writers that open files themselves, such as SQLite.
pub fn write_atomic_at(path: &Path, fill: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    replace_with(path, |tmp| fill(tmp.path()))
}

/// Creates a temporary file beside `path`, lets `fill` write it, then renames it to `path`
/// (as an ordinary 0644 file); on failure the temporary file is removed.
fn replace_with(
    path: &Path,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| IoError::fs(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| IoError::fs(dir, e))?;
    fill(&mut tmp).map_err(|e| IoError::fs(path, e))?;
    // Temporary files are created owner-only; results are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| IoError::fs(path, e))?;
    }
    tmp.persist(path).map_err(|e| IoError::fs(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"keep").unwrap();
        let r = write_atomic_with(&p, |_| Err(std::io::Error::other("boom")));
        assert!(r.unwrap_err().to_string().contains("a.bin"));
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

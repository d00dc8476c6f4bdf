//! Write files so that a reader never sees a half-written one: write a temporary file in
//! the same folder, flush it to disk, then rename it over the target. A failure leaves
//! the previous file as it was and no temporary file behind.
//!
//! The writers are generic over the caller's error type `E` (anything a [`FileError`]
//! converts into), so a fill closure can fail with the caller's own errors.

use crate::FileError;
use std::io::Write;
use std::path::Path;

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, |f| {
        f.write_all(bytes).map_err(|e| FileError::new(path, e))
    })
}

/// Atomically replaces `path` with whatever `fill` writes into the open temporary file.
pub fn write_atomic_with<E: From<FileError>>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<(), E>,
) -> Result<(), E> {
    replace_with(path, |tmp| {
        fill(tmp.as_file_mut())?;
        tmp.as_file_mut()
            .sync_all()
            .map_err(|e| FileError::new(path, e).into())
    })
}

/// Atomically replaces `path` with the file `fill` writes at the temporary path it is
/// given (an existing empty file), for writers that open files themselves (SQLite,
/// safetensors). The file is flushed to disk before the rename.
pub fn write_atomic_at<E: From<FileError>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    replace_with(path, |tmp| {
        fill(tmp.path())?;
        std::fs::File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .map_err(|e| FileError::new(path, e).into())
    })
}

/// Creates a temporary file beside `path`, lets `fill` write it, then renames it to
/// `path` as an ordinary 0644 file; on failure the temporary file is removed (on drop).
fn replace_with<E: From<FileError>>(
    path: &Path,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<(), E>,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| FileError::new(dir, e))?;
    fill(&mut tmp)?;
    // Temporary files are created owner-only; results are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| FileError::new(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| FileError::new(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("a.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[derive(Debug)]
    enum CallerError {
        File(FileError),
        Own(&'static str),
    }

    impl From<FileError> for CallerError {
        fn from(e: FileError) -> Self {
            Self::File(e)
        }
    }

    #[test]
    fn failed_fill_keeps_old_file_and_returns_the_callers_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"keep").unwrap();
        let r = write_atomic_with(&p, |_| Err(CallerError::Own("boom")));
        assert!(matches!(r, Err(CallerError::Own("boom"))));
        let r = write_atomic_at(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(CallerError::Own("late"))
        });
        assert!(matches!(r, Err(CallerError::Own("late"))));
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // The writer's own file errors arrive converted into the caller's type.
        let r = write_atomic_with::<CallerError>(&p.join("below_a_file"), |_| Ok(()));
        assert!(matches!(r, Err(CallerError::File(e)) if e.path == p));
    }

    #[test]
    fn path_writer_renames_what_the_writer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        write_atomic_at::<FileError>(&p, |tmp| {
            std::fs::write(tmp, b"pages").map_err(|e| FileError::new(tmp, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"pages");
    }

    #[test]
    fn unwritable_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_atomic(&blocker.join("a.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}

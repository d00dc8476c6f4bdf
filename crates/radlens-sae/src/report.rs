//! Report files of SAE runs (`train.json`, `metrics.json`): typed reports written as
//! pretty JSON with the keys of every object sorted and `f32` fields widened to `f64`, the
//! form these files have had since they were built as `serde_json::Value`s (which sort
//! keys and hold every number as an f64), so that they stay byte-comparable across
//! versions. Read them back into the same types with `radlens_core::results::read_json`.

use crate::{Result, SaeError};
use radlens_core::atomic::write_atomic;
use serde::Serialize;
use std::path::Path;

/// The text of a report file.
pub fn report_text<T: Serialize>(report: &T) -> Result<String> {
    let invalid = |e: serde_json::Error| SaeError::Config(format!("unwritable report: {e}"));
    serde_json::to_string_pretty(&serde_json::to_value(report).map_err(invalid)?).map_err(invalid)
}

/// Writes a report file atomically.
pub fn write_report<T: Serialize>(path: &Path, report: &T) -> Result<()> {
    Ok(write_atomic(path, report_text(report)?.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        z: f32,
        a: u8,
    }

    #[derive(Serialize)]
    struct Outer {
        b: Inner,
        a: Option<f64>,
    }

    #[test]
    fn keys_are_sorted_and_f32_widened() {
        let text = report_text(&Outer {
            b: Inner { z: 0.999, a: 1 },
            a: None,
        })
        .unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": null,\n  \"b\": {\n    \"a\": 1,\n    \"z\": 0.9990000128746033\n  }\n}"
        );
    }
}

//! Result files (`summary.json`, `result.json`) keep the layout they have always had:
//! pretty JSON with every object's keys in sorted order, whatever the order of the
//! fields in the Rust type, so that results compare byte for byte across versions.

use crate::error::Result;
use radlens_core::FileError;
use serde::Serialize;
use std::path::Path;

/// Writes `value` as pretty JSON with sorted keys, atomically.
pub(crate) fn write_sorted_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    // serde_json's own maps are ordered by key (its `preserve_order` feature is off).
    let sorted = serde_json::to_value(value).map_err(|e| FileError::invalid(path, e))?;
    Ok(radlens_core::results::write_json(path, &sorted)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Doc {
        width: usize,
        classes: Vec<Class>,
    }

    #[derive(Serialize)]
    struct Class {
        name: &'static str,
        entropy: f32,
    }

    #[test]
    fn keys_are_sorted_at_every_level_and_f32_keeps_its_f64_digits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("result.json");
        let doc = Doc {
            width: 2,
            classes: vec![Class {
                name: "heart",
                entropy: 0.1,
            }],
        };
        write_sorted_json(&p, &doc).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\n  \"classes\": [\n    {\n      \"entropy\": 0.10000000149011612,\n      \"name\": \"heart\"\n    }\n  ],\n  \"width\": 2\n}"
        );
    }
}

//! The models the server reads images with, loaded once, and the version string that
//! keys every cached result: a change of weights, calibration or sampling is a new
//! version, so results of an older model are never shown as this one's.

use radlens_report::analysis::Models;
use radlens_report::measure::conformal::FILE_NAME as INTERVAL_CALIBRATION;
use radlens_report::measure::SampleConfig;
use radlens_report::Labeler;
use std::path::Path;

pub struct Engine {
    pub models: Models,
    pub labeler: Labeler,
    /// `<run folder name>@<content hash>/<samples>s/seed<seed>`.
    pub version: String,
    /// The anatomy model's class names by id.
    pub classes: Vec<String>,
}

/// FNV-1a, 64 bit: a content fingerprint (not a security hash).
pub fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Engine {
    /// Load the anatomy model from its run folder with its calibrated temperature.
    pub fn load(model: &Path, samples: usize, seed: u64) -> Result<Self, String> {
        if samples == 0 {
            return Err("--samples must be at least 1 (the SSN intervals need samples)".into());
        }
        let sampling = SampleConfig {
            samples,
            temperature: None,
            seed,
        };
        let models = Models::load(model, None, sampling).map_err(|e| e.to_string())?;
        let mut h = FNV_OFFSET;
        // everything a result depends on; the two calibrations are optional
        let optional = ["calibration.json", INTERVAL_CALIBRATION];
        for f in ["model.safetensors", "config.json"]
            .into_iter()
            .chain(optional)
        {
            match std::fs::read(model.join(f)) {
                Ok(b) => h = fnv1a(&b, h),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional.contains(&f) => {}
                Err(e) => return Err(format!("{}: {e}", model.join(f).display())),
            }
        }
        let name = model
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned());
        let labeler = Labeler::builtin().map_err(|e| e.to_string())?;
        let classes = models.anatomy.predictor.model.classes().names.clone();
        Ok(Self {
            models,
            labeler,
            version: format!("{name}@{h:016x}/{samples}s/seed{seed}"),
            classes,
        })
    }
}

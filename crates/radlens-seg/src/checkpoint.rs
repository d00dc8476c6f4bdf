//! A run directory: the config, the best weights, the resumable checkpoint,
//! the split and the training history, each written atomically.
//!
//! ```text
//! <run>/config.json          model + training config, dataset, parameter count
//! <run>/model.safetensors    weights with the best validation Dice
//! <run>/split.json           the train/val/test case ids
//! <run>/history.csv          one row per epoch
//! <run>/calibration.json     the SSN's sampling temperature (absent: 1)
//! <run>/checkpoint/last.safetensors  weights + AdamW moments after the last epoch
//! <run>/checkpoint/state.json        epoch, step, best score
//! ```

use crate::calibrate::TemperatureCalibration;
use crate::config::{ModelConfig, TrainConfig};
use crate::error::{Result, SegError};
use crate::unet::SegModel;
use candle_core::{Device, Tensor};
use radlens_core::atomic::write_atomic;
use radlens_core::results::{read_json, write_json};
use radlens_core::RunDir;
use radlens_io::dataset::DatasetKind;
use radlens_io::DatasetSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What `config.json` records about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// The training dataset as given (`kind:dir`).
    pub dataset: String,
    pub parameters: usize,
    pub radlens_version: String,
    /// The checkpoint the weights started from (`--init`), when not from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
}

/// Progress of a training run, for `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    pub step: usize,
    pub best_val_dice: f64,
    pub best_epoch: usize,
}

/// A segmentation run: a [`radlens_core::RunDir`] marked by its `config.json`, with the
/// file names above.
#[derive(Debug, Clone)]
pub struct SegRun(RunDir);

impl SegRun {
    /// The run in `root`, without checking anything (for reading a finished run).
    pub fn at(root: &Path) -> Self {
        Self(RunDir::at(root))
    }

    /// Opens `root` for a new run (it must not hold one yet; the folder is created) or,
    /// with `resume`, for continuing the run it holds.
    pub fn open(root: &Path, resume: bool) -> Result<Self> {
        Ok(Self(RunDir::open(root, CONFIG, resume)?))
    }

    pub fn config(&self) -> PathBuf {
        self.0.join(CONFIG)
    }
    pub fn model(&self) -> PathBuf {
        self.0.join("model.safetensors")
    }
    pub fn split(&self) -> PathBuf {
        self.0.join("split.json")
    }
    pub fn history(&self) -> PathBuf {
        self.0.join("history.csv")
    }
    pub fn last(&self) -> PathBuf {
        self.0.join("checkpoint").join("last.safetensors")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("checkpoint").join("state.json")
    }

    /// Read `config.json`.
    pub fn read_info(&self) -> Result<RunInfo> {
        Ok(read_json(&self.config())?)
    }

    /// The kind of data the run's model was trained on, from the `dataset` its
    /// `config.json` records (a U-Net's or a SemanticGAN's); `None` when that is not a
    /// `kind:dir` radlens knows.
    pub fn trained_on(&self) -> Result<Option<DatasetKind>> {
        #[derive(Deserialize)]
        struct TrainedOn {
            dataset: String,
        }
        let t: TrainedOn = read_json(&self.config())?;
        Ok(t.dataset.parse::<DatasetSpec>().ok().map(|s| s.kind))
    }

    /// Write `config.json` (atomically, as every file of the run).
    pub fn write_info(&self, info: &RunInfo) -> Result<()> {
        Ok(write_json(&self.config(), info)?)
    }

    pub fn calibration(&self) -> PathBuf {
        self.0.join("calibration.json")
    }

    /// Read `calibration.json`; `None` when the run has none (runs from before
    /// calibration, or plain models), which means temperature 1.
    pub fn read_calibration(&self) -> Result<Option<TemperatureCalibration>> {
        let path = self.calibration();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json(&path)?))
    }

    /// Write `calibration.json`.
    pub fn write_calibration(&self, calibration: &TemperatureCalibration) -> Result<()> {
        Ok(write_json(&self.calibration(), calibration)?)
    }

    /// Read `checkpoint/state.json`.
    pub fn read_state(&self) -> Result<TrainState> {
        Ok(read_json(&self.state())?)
    }

    /// Write `checkpoint/state.json`.
    pub fn write_state(&self, state: &TrainState) -> Result<()> {
        Ok(write_json(&self.state(), state)?)
    }
}

/// The file whose presence marks a folder as holding a run.
const CONFIG: &str = "config.json";

/// Save tensors as safetensors atomically.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let bytes = safetensors::serialize(
        tensors
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .collect::<Vec<_>>(),
        None,
    )
    .map_err(|e| SegError::Invalid(format!("{}: cannot serialise tensors: {e}", path.display())))?;
    Ok(write_atomic(path, &bytes)?)
}

/// Load a safetensors file onto `device`.
pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(SegError::Config {
            path: path.to_path_buf(),
            reason: "checkpoint file not found".into(),
        });
    }
    candle_core::safetensors::load(path, device).map_err(|e| SegError::Config {
        path: path.to_path_buf(),
        reason: format!("not a readable safetensors file: {e}"),
    })
}

/// Load the model of a run directory (config + best weights).
pub fn load_model(
    run: &Path,
    device: &Device,
    backend: crate::config::ConvBackend,
) -> Result<SegModel> {
    let dir = SegRun::at(run);
    if !run.is_dir() {
        return Err(SegError::Config {
            path: run.to_path_buf(),
            reason: "model folder not found".into(),
        });
    }
    let info = dir.read_info()?;
    let model = SegModel::new(&info.model, device, 0, backend).map_err(|e| SegError::Config {
        path: dir.config(),
        reason: e.to_string(),
    })?;
    let tensors = load_tensors(&dir.model(), device)?;
    model.params.assign_from(&tensors, &dir.model())?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConvBackend, HeadConfig};

    fn small(head: HeadConfig) -> ModelConfig {
        ModelConfig {
            image_size: 16,
            base_width: 4,
            depth: 2,
            head,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn round_trip_and_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = SegRun::at(dir.path());
        let cfg = small(HeadConfig::Plain);
        let m = SegModel::new(&cfg, &Device::Cpu, 1, ConvBackend::Radlens).unwrap();
        let info = RunInfo {
            model: cfg.clone(),
            train: TrainConfig::default(),
            dataset: "jsrt:x".into(),
            parameters: m.params.count(),
            radlens_version: "test".into(),
            init: None,
        };
        run.write_info(&info).unwrap();
        save_tensors(&run.model(), &m.params.tensors()).unwrap();
        let back = load_model(dir.path(), &Device::Cpu, ConvBackend::Radlens).unwrap();
        for (name, t) in m.params.tensors() {
            let u = &back.params.tensors()[&name];
            let diff = (&t - u)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0, "{name}");
        }
        // a config with another head no longer matches the weights
        let other = RunInfo {
            model: small(HeadConfig::Ssn {
                rank: 2,
                mc_samples: 4,
            }),
            ..info.clone()
        };
        run.write_info(&other).unwrap();
        let e = load_model(dir.path(), &Device::Cpu, ConvBackend::Radlens)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("does not match"),
            "{e}"
        );
        run.write_info(&info).unwrap();
        // no calibration.json (as in runs from before calibration): temperature 1
        let mut p = crate::Predictor::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(p.temperature, 1.0);
        // a U-Net has no inversion to shorten, and says so
        assert_eq!(p.model.inversion_steps(), None);
        let e = p.model.set_inversion_steps(0).unwrap_err().to_string();
        assert!(e.contains("SemanticGAN"), "{e}");
        let calibration = TemperatureCalibration {
            temperature: 0.35,
            criterion: "test".into(),
            dataset: "jsrt:x".into(),
            split: radlens_io::split::SplitPart::Val,
            images: 2,
            samples_per_image: 4,
            scores: Vec::new(),
        };
        run.write_calibration(&calibration).unwrap();
        assert_eq!(run.read_calibration().unwrap(), Some(calibration));
        let p = crate::Predictor::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(p.temperature, 0.35);
        std::fs::write(run.calibration(), b"{\"temperature\": ").unwrap();
        let e = crate::Predictor::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("calibration.json"), "{e}");

        std::fs::write(run.model(), b"garbage").unwrap();
        let e = load_model(dir.path(), &Device::Cpu, ConvBackend::Radlens)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
}

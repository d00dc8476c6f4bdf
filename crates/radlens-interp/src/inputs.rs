//! The inputs of a harvest, and of an evaluation on the store it made: the reports of a
//! corpus part, and the language model with the name its stores record.

use crate::{InterpError, Result};
use candle_core::Device;
use radlens_lm::{LanguageModel, WeightFormat};
use radlens_report::{CorpusSpec, Report, ReportPart, ReportSplit};
use std::path::Path;

/// The reports of one part of a corpus, optionally only the first `max`; errors if none.
pub fn select_reports(
    corpus: &CorpusSpec,
    split: ReportSplit,
    part: ReportPart,
    max: Option<usize>,
) -> Result<Vec<Report>> {
    let mut reports = split.select(corpus.read()?, part)?;
    if let Some(m) = max {
        reports.truncate(m);
    }
    if reports.is_empty() {
        return Err(InterpError::invalid(format!(
            "{corpus}: no reports in part '{part}'"
        )));
    }
    Ok(reports)
}

/// The texts of the first `shots` training reports of `corpus` under `split`: a few-shot
/// template's examples (none read for 0).
pub fn example_reports(
    corpus: &CorpusSpec,
    split: ReportSplit,
    shots: usize,
) -> Result<Vec<String>> {
    if shots == 0 {
        return Ok(Vec::new());
    }
    let reports = select_reports(corpus, split, ReportPart::Train, Some(shots))?;
    if reports.len() < shots {
        return Err(InterpError::invalid(format!(
            "{corpus}: {shots} example reports asked for but the training part has {}",
            reports.len()
        )));
    }
    Ok(reports.iter().map(|r| r.text()).collect())
}

/// Loads a GGUF model on the CPU with f32 weights (harvests and splices run in f32).
pub fn load_model(path: &Path) -> Result<LanguageModel> {
    Ok(LanguageModel::load(path, &Device::Cpu, WeightFormat::F32)?)
}

/// The name a store records for the model at `path`: its file name.
pub fn model_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

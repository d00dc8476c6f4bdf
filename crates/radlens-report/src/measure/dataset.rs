//! Measurements over a dataset, beside the same measurement computed from the dataset's
//! reference masks where it has the classes (`measurements.csv`, `summary.json`).

use super::conformal::{IntervalCalibration, Margin, METHOD};
use super::geometry::{AnatomyIds, MaskMeasures};
use super::{
    measure, predict_masks, AppliedMargins, Interval, MeasureModel, Measurements, SampleConfig,
};
use crate::error::{ReportError, Result};
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_eval::stats::{bootstrap_ci, bootstrap_mean_ci};
use radlens_io::split::SplitPart;
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One case's measurements and its references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseMeasurements {
    pub case: String,
    pub view: Option<String>,
    pub measured: Measurements,
    pub ctr_reference: Option<f64>,
    pub lung_ratio_reference: Option<f64>,
    pub right_lung_area_reference: Option<f64>,
    pub left_lung_area_reference: Option<f64>,
}

/// Agreement of one measurement with its reference over the cases that have both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub cases: usize,
    pub mean_absolute_error: f64,
    pub mae_ci95: (f64, f64),
    /// Fraction of cases whose reference lies inside the sample interval.
    pub coverage: f64,
    pub coverage_ci95: (f64, f64),
    pub mean_interval_width: f64,
}

/// `summary.json` of `radlens report measure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureSummary {
    pub dataset: String,
    pub model: String,
    pub part: String,
    pub cases: usize,
    /// Cases whose masks failed the plausibility check (not measured).
    pub implausible: Vec<String>,
    pub samples: SampleConfig,
    /// The conformal margins the intervals carry (`None`: raw sample intervals).
    pub conformal: Option<AppliedMargins>,
    pub ctr: Option<Agreement>,
    pub lung_ratio: Option<Agreement>,
}

/// The reference ids of a dataset's schema (`heart` only where the dataset has it:
/// covid-cxr's cardiomediastinum is not the heart).
fn reference_ids(ds: &Dataset) -> Option<AnatomyIds> {
    Some(AnatomyIds {
        right_lung: ds.classes.id("right_lung")?,
        left_lung: ds.classes.id("left_lung")?,
        heart: ds.classes.id("heart"),
        opacity: None,
    })
}

/// Measure every sample, counting them off to `progress`.
pub fn measure_cases(
    model: &MeasureModel,
    ds: &Dataset,
    samples: &[&Sample],
    cfg: SampleConfig,
    progress: &dyn Observer<Count>,
) -> Result<Vec<CaseMeasurements>> {
    let refs = reference_ids(ds);
    let mut out = Vec::new();
    for (done, s) in (1..).zip(samples) {
        let img = s
            .load_image()
            .map_err(|e| ReportError::Invalid(e.to_string()))?;
        let masks = predict_masks(model, &img, cfg)?;
        let measured = measure(&img, (&masks, model), None, cfg);
        let reference = match refs {
            Some(ids) => {
                let lab = s
                    .load_labels((img.width, img.height))
                    .map_err(|e| ReportError::Invalid(e.to_string()))?;
                Some(MaskMeasures::of(&lab, ids))
            }
            None => None,
        };
        let px_area = img.spacing.map_or(1.0, |sp| sp.row_mm * sp.col_mm);
        out.push(CaseMeasurements {
            case: s.id.clone(),
            view: s.attributes.view().map(str::to_string),
            measured,
            ctr_reference: reference.and_then(|r| r.ctr()),
            lung_ratio_reference: reference.and_then(|r| r.lung_ratio()),
            right_lung_area_reference: reference
                .filter(|r| r.right_lung_pixels > 0)
                .map(|r| r.right_lung_pixels as f64 * px_area),
            left_lung_area_reference: reference
                .filter(|r| r.left_lung_pixels > 0)
                .map(|r| r.left_lung_pixels as f64 * px_area),
        });
        progress.observe(&Count {
            done,
            total: samples.len() as u64,
        });
    }
    Ok(out)
}

/// Agreement of (interval, reference) pairs; `None` without pairs.
pub fn agreement(pairs: &[(Interval, f64)], seed: u64) -> Option<Agreement> {
    if pairs.is_empty() {
        return None;
    }
    let err: Vec<f64> = pairs.iter().map(|(i, r)| (i.value - r).abs()).collect();
    let inside: Vec<f64> = pairs
        .iter()
        .map(|(i, r)| f64::from(u8::from(i.low <= *r && *r <= i.high)))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let widths: Vec<f64> = pairs.iter().map(|(i, _)| i.high - i.low).collect();
    Some(Agreement {
        cases: pairs.len(),
        mean_absolute_error: mean(&err),
        mae_ci95: bootstrap_mean_ci(&err, 2000, seed),
        coverage: mean(&inside),
        coverage_ci95: bootstrap_ci(inside.len(), 2000, seed, |idx| {
            idx.iter().map(|&i| inside[i]).sum::<f64>() / idx.len() as f64
        }),
        mean_interval_width: mean(&widths),
    })
}

fn ctr_pairs(cases: &[CaseMeasurements]) -> Vec<(Interval, f64)> {
    cases
        .iter()
        .filter_map(|c| Some((c.measured.ctr?, c.ctr_reference?)))
        .collect()
}

fn lung_ratio_pairs(cases: &[CaseMeasurements]) -> Vec<(Interval, f64)> {
    cases
        .iter()
        .filter_map(|c| Some((c.measured.lung_ratio?, c.lung_ratio_reference?)))
        .collect()
}

/// The summary of measured cases.
pub fn summarise(
    cases: &[CaseMeasurements],
    dataset: &str,
    model: &str,
    part: &str,
    samples: SampleConfig,
    conformal: Option<AppliedMargins>,
) -> MeasureSummary {
    MeasureSummary {
        dataset: dataset.into(),
        model: model.into(),
        part: part.into(),
        cases: cases.len(),
        implausible: cases
            .iter()
            .filter(|c| !c.measured.plausibility.plausible)
            .map(|c| c.case.clone())
            .collect(),
        samples,
        conformal,
        ctr: agreement(&ctr_pairs(cases), samples.seed),
        lung_ratio: agreement(&lung_ratio_pairs(cases), samples.seed),
    }
}

/// Conformal margins for nominal `coverage` from cases measured with raw sample
/// intervals (part `split` of the model's split) at `temperature`; see
/// [`super::conformal`].
pub fn calibrate_intervals(
    cases: &[CaseMeasurements],
    dataset: &str,
    split: SplitPart,
    coverage: f64,
    temperature: f64,
    samples: SampleConfig,
) -> Result<IntervalCalibration> {
    if cases.iter().any(|c| c.measured.conformal.is_some()) {
        return Err(ReportError::Invalid(
            "interval calibration needs raw sample intervals, not already widened ones".into(),
        ));
    }
    let ctr = ctr_pairs(cases);
    if ctr.is_empty() {
        return Err(ReportError::Invalid(format!(
            "{dataset}: no case has both a measured and a reference CTR to calibrate on"
        )));
    }
    let ratio = lung_ratio_pairs(cases);
    Ok(IntervalCalibration {
        method: METHOD.into(),
        coverage,
        dataset: dataset.into(),
        split,
        temperature,
        samples: samples.samples,
        seed: samples.seed,
        ctr: Some(Margin::calibrate(&ctr, coverage)?),
        lung_ratio: (!ratio.is_empty())
            .then(|| Margin::calibrate(&ratio, coverage))
            .transpose()?,
    })
}

/// The columns of `measurements.csv`.
pub const CSV_HEADER: [&str; 20] = [
    "case",
    "view",
    "plausible",
    "ctr",
    "ctr_low",
    "ctr_high",
    "ctr_reference",
    "lung_ratio",
    "lung_ratio_low",
    "lung_ratio_high",
    "lung_ratio_reference",
    "right_lung_area",
    "right_lung_area_low",
    "right_lung_area_high",
    "right_lung_area_reference",
    "left_lung_area",
    "left_lung_area_low",
    "left_lung_area_high",
    "left_lung_area_reference",
    "area_unit",
];

/// Writes `measurements.csv` (empty cells where a value is absent) and `summary.json`.
pub fn write_measurements(
    dir: &Path,
    cases: &[CaseMeasurements],
    summary: &MeasureSummary,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| radlens_core::FileError::new(dir, e))?;
    let num = |v: Option<f64>, digits: usize| v.map_or(String::new(), |x| format!("{x:.digits$}"));
    let iv = |i: Option<Interval>, d: usize| {
        [
            num(i.map(|i| i.value), d),
            num(i.map(|i| i.low), d),
            num(i.map(|i| i.high), d),
        ]
    };
    let rows = cases.iter().map(|c| {
        let m = &c.measured;
        let mut row = vec![
            c.case.clone(),
            c.view.clone().unwrap_or_default(),
            m.plausibility.plausible.to_string(),
        ];
        row.extend(iv(m.ctr, 4));
        row.push(num(c.ctr_reference, 4));
        row.extend(iv(m.lung_ratio, 4));
        row.push(num(c.lung_ratio_reference, 4));
        row.extend(iv(m.right_lung_area, 1));
        row.push(num(c.right_lung_area_reference, 1));
        row.extend(iv(m.left_lung_area, 1));
        row.push(num(c.left_lung_area_reference, 1));
        row.push(m.area_unit.clone());
        row
    });
    radlens_core::results::write_csv(&dir.join("measurements.csv"), &CSV_HEADER, rows)?;
    radlens_core::results::write_json(&dir.join("summary.json"), summary)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_by_hand() {
        let iv = |value: f64, low: f64, high: f64| Interval { value, low, high };
        let pairs = [(iv(0.50, 0.45, 0.55), 0.52), (iv(0.40, 0.38, 0.42), 0.45)];
        let a = agreement(&pairs, 1).unwrap();
        assert!((a.mean_absolute_error - 0.035).abs() < 1e-12);
        assert_eq!(a.coverage, 0.5);
        assert!((a.mean_interval_width - 0.07).abs() < 1e-12);
        assert!(agreement(&[], 1).is_none());
    }
}

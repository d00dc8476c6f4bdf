//! Calibrating the SSN's sampling temperature on validation cases, so that the
//! samples a user sees are the spread the data supports rather than the training
//! distribution's, whose far draws relabel whole organs.
//!
//! Criterion: the mean GED^2 over images (d = 1 - IoU over the annotated
//! structures, as in `seg eval`), lowest wins, among the temperatures whose
//! implausible-sample fraction is at most [`MAX_IMPLAUSIBLE_FRACTION`] (all of
//! them when none is). GED^2 rather than NLL because it scores the samples
//! themselves, which is what predict shows, and because with one reference per
//! image it rewards spread only where the reference is uncertain.
//! Every temperature sees the same noise (each image's seed is its index), so
//! differences between temperatures are not sampling noise between draws.

use crate::error::{Result, SegError};
use crate::evaluate::{class_map, score_cases, EvalEvent, SampleMetrics};
use crate::predict::Predictor;
use radlens_core::Observer;
use radlens_io::split::SplitPart;
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};

/// The criterion, as recorded in `calibration.json`.
pub const CRITERION: &str = "lowest mean GED^2 over validation images among temperatures with an implausible-sample fraction <= 0.02 (all, if none)";
/// A temperature whose samples are implausible more often than this is not chosen.
pub const MAX_IMPLAUSIBLE_FRACTION: f64 = 0.02;
/// The temperatures tried by default: 0.05 to 1 in steps of 0.05.
pub fn default_grid() -> Vec<f64> {
    (1..=20).map(|i| i as f64 * 0.05).collect()
}

/// One temperature's scores, means over the validation images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureScore {
    pub temperature: f64,
    pub ged_squared: f64,
    pub sample_diversity: f64,
    pub hm_iou: f64,
    pub implausible_sample_fraction: f64,
}

/// `calibration.json`: the chosen temperature and how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureCalibration {
    pub temperature: f64,
    pub criterion: String,
    /// The calibration data as `kind:dir`.
    pub dataset: String,
    pub split: SplitPart,
    pub images: usize,
    pub samples_per_image: usize,
    pub scores: Vec<TemperatureScore>,
}

/// Scores of every temperature of `grid` on `cases` with `samples` samples per image.
pub fn score_temperatures(
    predictor: &Predictor,
    dataset: &Dataset,
    cases: &[&Sample],
    grid: &[f64],
    samples: usize,
    observer: &dyn Observer<EvalEvent>,
) -> Result<Vec<TemperatureScore>> {
    if !predictor.model.is_stochastic() {
        return Err(SegError::Invalid(
            "only a stochastic (SSN) model has a sampling temperature to calibrate".into(),
        ));
    }
    if samples < 2 || cases.is_empty() || grid.is_empty() {
        return Err(SegError::Invalid(format!(
            "calibration needs at least 2 samples, one case and one temperature (got {samples} samples, {} cases, {} temperatures)",
            cases.len(),
            grid.len()
        )));
    }
    if let Some(t) = grid.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(SegError::Invalid(format!(
            "temperatures must be positive numbers, got {t}"
        )));
    }
    let map = class_map(predictor, dataset)?;
    let per_case = score_cases(cases, &map, observer, |k, _, img, reference| {
        let out = predictor.forward(img)?;
        let small_ref = out.letterbox.labels(reference).labels;
        grid.iter()
            .map(|&t| {
                let pred = predictor.draw(&out, samples, t, k as u64)?;
                let m = SampleMetrics::of(&pred, &small_ref, &map.annotated)
                    .expect("a stochastic model with samples > 0 draws samples");
                Ok([
                    m.ged_squared,
                    m.sample_diversity,
                    m.hm_iou,
                    m.implausible_sample_fraction,
                ])
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut sums = vec![[0.0f64; 4]; grid.len()];
    for case in per_case {
        for (sum, scores) in sums.iter_mut().zip(case) {
            for (acc, v) in sum.iter_mut().zip(scores) {
                *acc += v;
            }
        }
    }
    let n = cases.len() as f64;
    Ok(grid
        .iter()
        .zip(sums)
        .map(|(&temperature, s)| TemperatureScore {
            temperature,
            ged_squared: s[0] / n,
            sample_diversity: s[1] / n,
            hm_iou: s[2] / n,
            implausible_sample_fraction: s[3] / n,
        })
        .collect())
}

/// The temperature [`CRITERION`] picks from `scores` (not empty).
pub fn choose_temperature(scores: &[TemperatureScore]) -> f64 {
    let plausible: Vec<&TemperatureScore> = scores
        .iter()
        .filter(|s| s.implausible_sample_fraction <= MAX_IMPLAUSIBLE_FRACTION)
        .collect();
    let pool: Vec<&TemperatureScore> = if plausible.is_empty() {
        scores.iter().collect()
    } else {
        plausible
    };
    pool.into_iter()
        .min_by(|a, b| a.ged_squared.total_cmp(&b.ged_squared))
        .expect("scores are not empty")
        .temperature
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(temperature: f64, ged_squared: f64, implausible: f64) -> TemperatureScore {
        TemperatureScore {
            temperature,
            ged_squared,
            sample_diversity: 0.0,
            hm_iou: 0.0,
            implausible_sample_fraction: implausible,
        }
    }

    #[test]
    fn lowest_ged_among_plausible_temperatures() {
        let s = [
            score(0.2, 0.10, 0.0),
            score(0.4, 0.08, 0.01),
            score(0.6, 0.07, 0.05),
            score(1.0, 0.15, 0.30),
        ];
        assert_eq!(choose_temperature(&s), 0.4);
        // nothing plausible: plain lowest GED^2
        let s = [score(0.5, 0.2, 0.1), score(1.0, 0.1, 0.3)];
        assert_eq!(choose_temperature(&s), 1.0);
    }

    #[test]
    fn default_grid_spans_0_05_to_1() {
        let g = default_grid();
        assert_eq!(g.len(), 20);
        assert!((g[0] - 0.05).abs() < 1e-12 && (g[19] - 1.0).abs() < 1e-12);
    }
}

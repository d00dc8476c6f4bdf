//! Split-conformal calibration of the sample intervals (conformalized quantile
//! regression, Romano, Patterson & Candès 2019). The SSN samples' 2.5-97.5 percentile
//! interval of a derived measurement (CTR, lung-area ratio) is far narrower than the
//! error of the mean mask's value: the samples model the annotators' spread of the
//! masks, not the model's error in a ratio of widths. On held-out cases (the run's
//! calibration split, which neither training nor any choice made on validation saw, or
//! else its validation split) each case scores `max(low - reference, reference - high)` (how far outside its
//! interval the reference lies, negative inside); the margin is the
//! `ceil((n + 1) * coverage)`-th smallest score, and every interval is widened by it on
//! both sides. For exchangeable cases the reference then lies inside the widened interval
//! with probability at least `coverage`. The margin is stored with the model
//! (`interval_calibration.json`) and holds for the temperature and sample count it was
//! calibrated at; measurements at any other setting keep the raw sample interval.

use super::Interval;
use crate::error::{ReportError, Result};
use radlens_io::split::SplitPart;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name in a model's run folder.
pub const FILE_NAME: &str = "interval_calibration.json";

/// `ceil((n + 1) * coverage)`, robust to the product landing a rounding error above an
/// integer.
fn rank(n: usize, coverage: f64) -> usize {
    ((n + 1) as f64 * coverage - 1e-9).ceil() as usize
}

/// The conformal margin of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margin {
    /// Added below `low` and above `high` (never negative: the calibration only widens).
    pub margin: f64,
    /// Held-out cases it was chosen on.
    pub cases: usize,
    /// Fraction of those cases whose reference lay inside the raw sample interval.
    pub raw_coverage: f64,
}

impl Margin {
    /// The split-conformal margin for nominal `coverage` from (sample interval,
    /// reference) pairs; an error when the pairs are too few for that coverage
    /// (`ceil((n + 1) * coverage) > n`).
    pub fn calibrate(pairs: &[(Interval, f64)], coverage: f64) -> Result<Self> {
        if !(coverage > 0.0 && coverage < 1.0) {
            return Err(ReportError::Invalid(format!(
                "interval coverage must lie in (0, 1), got {coverage}"
            )));
        }
        let n = pairs.len();
        if rank(n, coverage) > n {
            let needed = (1..)
                .find(|&m| rank(m, coverage) <= m)
                .unwrap_or(usize::MAX);
            return Err(ReportError::Invalid(format!(
                "{n} held-out cases are too few for a {:.0}% conformal interval (need at least {needed})",
                100.0 * coverage
            )));
        }
        let rank = rank(n, coverage);
        let mut scores: Vec<f64> = pairs
            .iter()
            .map(|(i, r)| (i.low - r).max(r - i.high))
            .collect();
        scores.sort_by(f64::total_cmp);
        let inside = pairs
            .iter()
            .filter(|(i, r)| i.low <= *r && *r <= i.high)
            .count();
        Ok(Self {
            margin: scores[rank - 1].max(0.0),
            cases: n,
            raw_coverage: inside as f64 / n as f64,
        })
    }
}

/// The margins of a model, with the setting they hold for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalCalibration {
    pub method: String,
    /// Nominal probability that the reference lies inside the widened interval.
    pub coverage: f64,
    pub dataset: String,
    /// The part of the model's split the margins were chosen on.
    pub split: SplitPart,
    /// Sampling temperature and samples per image the margins were chosen at.
    pub temperature: f64,
    pub samples: usize,
    pub seed: u64,
    pub ctr: Option<Margin>,
    pub lung_ratio: Option<Margin>,
}

/// What [`IntervalCalibration::method`] says.
pub const METHOD: &str = "split-conformal (CQR): score max(low - reference, reference - high) on held-out cases; margin = ceil((n+1) * coverage)-th smallest score, floored at 0, added on both sides";

impl IntervalCalibration {
    fn path(run: &Path) -> PathBuf {
        run.join(FILE_NAME)
    }

    /// The calibration stored in model run folder `run`, if any.
    pub fn read(run: &Path) -> Result<Option<Self>> {
        let path = Self::path(run);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ReportError::Invalid(format!("{}: {e}", path.display())))?;
        let cal: Self = serde_json::from_str(&text)
            .map_err(|e| ReportError::Invalid(format!("{}: {e}", path.display())))?;
        let bad = [cal.ctr, cal.lung_ratio]
            .into_iter()
            .flatten()
            .any(|m| !(m.margin.is_finite() && m.margin >= 0.0));
        if bad || !(cal.coverage > 0.0 && cal.coverage < 1.0) {
            return Err(ReportError::Invalid(format!(
                "{}: margins must be finite and >= 0 and coverage in (0, 1)",
                path.display()
            )));
        }
        Ok(Some(cal))
    }

    /// Store it in model run folder `run` (atomically).
    pub fn write(&self, run: &Path) -> Result<()> {
        radlens_core::results::write_json(&Self::path(run), self)?;
        Ok(())
    }

    /// Whether the margins hold for sampling at `temperature` with `samples` samples.
    pub fn holds_for(&self, temperature: f64, samples: usize) -> bool {
        (self.temperature - temperature).abs() < 1e-9 && self.samples == samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(low: f64, high: f64) -> Interval {
        Interval {
            value: (low + high) / 2.0,
            low,
            high,
        }
    }

    #[test]
    fn margin_is_the_conformal_order_statistic() {
        // scores: reference 0.1 below low -> 0.1; 0.05 above high -> 0.05; inside,
        // 0.05 from the nearer end -> -0.05; 0.4 above high -> 0.4
        let pairs = [
            (iv(0.1, 0.2), 0.0),
            (iv(0.2, 0.3), 0.35),
            (iv(0.4, 0.6), 0.45),
            (iv(0.4, 0.5), 0.9),
        ];
        // n = 4, coverage 0.6: rank ceil(5 * 0.6) = 3 -> sorted scores
        // [-0.05, 0.05, 0.1, 0.4] -> 0.1
        let m = Margin::calibrate(&pairs, 0.6).unwrap();
        assert!((m.margin - 0.1).abs() < 1e-12, "{m:?}");
        assert_eq!(m.cases, 4);
        assert_eq!(m.raw_coverage, 0.25);
        // coverage 0.8: rank ceil(4.0) = 4 -> 0.4
        assert!((Margin::calibrate(&pairs, 0.8).unwrap().margin - 0.4).abs() < 1e-12);
        // coverage 0.9: rank ceil(4.5) = 5 > 4 cases: refused
        let e = Margin::calibrate(&pairs, 0.9).unwrap_err().to_string();
        assert!(e.contains("too few") && e.contains("at least 9"), "{e}");
        // widening covers the cases whose score is at most the margin
        let w = pairs[1].0.widened(m.margin);
        assert!((w.low - 0.1).abs() < 1e-12 && (w.high - 0.4).abs() < 1e-12);
        assert!(w.low <= pairs[1].1 && pairs[1].1 <= w.high);
    }

    #[test]
    fn margin_never_narrows() {
        // every reference well inside: all scores negative -> margin 0
        let pairs: Vec<_> = (0..9).map(|_| (iv(0.0, 1.0), 0.5)).collect();
        let m = Margin::calibrate(&pairs, 0.5).unwrap();
        assert_eq!(m.margin, 0.0);
        assert_eq!(m.raw_coverage, 1.0);
    }

    #[test]
    fn stored_calibration_round_trips_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(IntervalCalibration::read(dir.path()).unwrap().is_none());
        let cal = IntervalCalibration {
            method: METHOD.into(),
            coverage: 0.9,
            dataset: "jsrt:x".into(),
            split: SplitPart::Calibration,
            temperature: 0.35,
            samples: 32,
            seed: 0,
            ctr: Some(Margin {
                margin: 0.02,
                cases: 24,
                raw_coverage: 0.4,
            }),
            lung_ratio: None,
        };
        cal.write(dir.path()).unwrap();
        assert_eq!(
            IntervalCalibration::read(dir.path()).unwrap(),
            Some(cal.clone())
        );
        assert!(cal.holds_for(0.35, 32));
        assert!(!cal.holds_for(0.5, 32) && !cal.holds_for(0.35, 16));
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let e = IntervalCalibration::read(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(FILE_NAME), "{e}");
        let mut neg = cal;
        neg.ctr.as_mut().unwrap().margin = -1.0;
        neg.write(dir.path()).unwrap();
        assert!(IntervalCalibration::read(dir.path()).is_err());
    }
}

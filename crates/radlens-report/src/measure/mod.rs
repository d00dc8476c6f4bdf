//! Measurements from the segmentation models with their SSN samples: cardiothoracic
//! ratio, lung areas and their left/right ratio, and (with the opacity model) opacity
//! extent per lung, each with a sample-based interval; a plausibility check first, so
//! that images the model cannot handle are named rather than measured.

pub mod conformal;
pub mod dataset;
pub mod geometry;
pub mod plausibility;

use crate::error::{ReportError, Result};
use conformal::IntervalCalibration;
use geometry::{AnatomyIds, MaskMeasures};
use plausibility::Plausibility;
use radlens_io::{ClassSchema, LabelMap, XrayImage};
use radlens_seg::Predictor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A measured value with the central 95% interval of the same measurement over the SSN
/// samples (percentiles with linear interpolation; the value itself when the model draws
/// no samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// `value` with the 2.5th-97.5th percentile of `samples` (widened to include
    /// `value`, the mean-mask measurement, which the interval is shown around).
    pub fn from_samples(value: f64, samples: &[f64]) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return Self {
                value,
                low: value,
                high: value,
            };
        }
        s.sort_by(f64::total_cmp);
        Self {
            value,
            low: percentile(&s, 0.025).min(value),
            high: percentile(&s, 0.975).max(value),
        }
    }

    /// Whether the whole interval lies on one side of `threshold`: `Some(true)` above,
    /// `Some(false)` below, `None` when it straddles it (the evidence is uncertain).
    pub fn side_of(&self, threshold: f64) -> Option<bool> {
        if self.low > threshold {
            Some(true)
        } else if self.high <= threshold {
            Some(false)
        } else {
            None
        }
    }

    /// The interval widened by `margin` on both sides (a conformal margin).
    pub fn widened(self, margin: f64) -> Self {
        Self {
            value: self.value,
            low: self.low - margin,
            high: self.high + margin,
        }
    }

    fn scaled(self, k: f64) -> Self {
        Self {
            value: self.value * k,
            low: self.low * k,
            high: self.high * k,
        }
    }
}

/// Linear-interpolation percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + f * (next - sorted[i]),
        None => sorted[i],
    }
}

/// How samples are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleConfig {
    pub samples: usize,
    /// Scale of the samples' deviation from the mean; `None`: the model's calibrated
    /// temperature (`calibration.json` of its run), so intervals are as wide as the
    /// validation split says they should be.
    pub temperature: Option<f64>,
    pub seed: u64,
}

/// Opacity extent per lung, as a fraction of the lung.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpacityExtent {
    pub right: Interval,
    pub left: Interval,
}

/// Everything measured on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    pub width: usize,
    pub height: usize,
    /// Pixel spacing (mm, row direction) when the image records it.
    pub spacing_mm: Option<f64>,
    /// `mm2` with a pixel spacing, `px` without.
    pub area_unit: String,
    pub plausibility: Plausibility,
    /// Cardiothoracic ratio (heart width / widest thoracic width); `None` for an
    /// implausible mask or a model without a heart class.
    pub ctr: Option<Interval>,
    pub right_lung_area: Option<Interval>,
    pub left_lung_area: Option<Interval>,
    /// Left / right lung area.
    pub lung_ratio: Option<Interval>,
    pub opacity: Option<OpacityExtent>,
    pub samples: SampleConfig,
    /// The conformal margins the CTR and lung-ratio intervals were widened by; `None`
    /// when the model has no interval calibration for this sampling setting (the
    /// intervals are then the raw sample percentiles, which cover too rarely).
    pub conformal: Option<AppliedMargins>,
    /// What the numbers cannot tell.
    pub caveat: String,
}

/// Conformal margins applied to an image's intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AppliedMargins {
    /// Nominal coverage of the widened intervals.
    pub coverage: f64,
    pub ctr: Option<f64>,
    pub lung_ratio: Option<f64>,
}

/// The caveat every measurement carries.
pub const PA_AP_CAVEAT: &str = "CTR from a frontal film: an AP or supine film magnifies the heart, so a CTR above 0.5 suggests cardiomegaly only on a PA film; areas are projected areas.";

/// A model with the ids of the classes measurements use and its interval calibration.
pub struct MeasureModel {
    pub predictor: Predictor,
    pub ids: AnatomyIds,
    /// Conformal margins for the intervals (`interval_calibration.json`), when calibrated.
    pub intervals: Option<IntervalCalibration>,
}

impl MeasureModel {
    /// Find the classes by name: `right_lung` and `left_lung` (required), `heart` and
    /// `opacity` (optional).
    pub fn new(predictor: Predictor) -> Result<Self> {
        let classes: &ClassSchema = predictor.model.classes();
        let need = |n: &str| {
            classes.id(n).ok_or_else(|| {
                ReportError::Invalid(format!(
                    "the model has no '{n}' class (its classes: {})",
                    classes.names.join(", ")
                ))
            })
        };
        let ids = AnatomyIds {
            right_lung: need("right_lung")?,
            left_lung: need("left_lung")?,
            heart: classes.id("heart"),
            opacity: classes.id("opacity"),
        };
        Ok(Self {
            predictor,
            ids,
            intervals: None,
        })
    }

    /// The model in run folder `dir` with its calibrated temperature and, when stored,
    /// its interval calibration.
    pub fn load(dir: &Path) -> Result<Self> {
        let named =
            |e: &dyn std::fmt::Display| ReportError::Invalid(format!("{}: {e}", dir.display()));
        let p = Predictor::load(dir, &candle_core::Device::Cpu).map_err(|e| named(&e))?;
        let mut m = Self::new(p).map_err(|e| named(&e))?;
        m.intervals = IntervalCalibration::read(dir)?;
        Ok(m)
    }

    /// The margins that hold for sampling with `cfg` (temperature and sample count as
    /// calibrated).
    pub fn margins(&self, cfg: SampleConfig) -> Option<AppliedMargins> {
        let t = cfg.temperature.unwrap_or(self.predictor.temperature);
        self.intervals
            .as_ref()
            .filter(|c| c.holds_for(t, cfg.samples))
            .map(|c| AppliedMargins {
                coverage: c.coverage,
                ctr: c.ctr.map(|m| m.margin),
                lung_ratio: c.lung_ratio.map(|m| m.margin),
            })
    }
}

/// Masks on the image grid: the mean and each sample.
#[derive(Debug, Clone)]
pub struct Masks {
    pub mean: LabelMap,
    pub samples: Vec<LabelMap>,
}

/// Predict `img` with `model`: the mean mask and the samples, on the image grid.
pub fn predict_masks(model: &MeasureModel, img: &XrayImage, cfg: SampleConfig) -> Result<Masks> {
    let p = model
        .predictor
        .predict(
            img,
            cfg.samples,
            cfg.temperature.unwrap_or(model.predictor.temperature),
            cfg.seed,
        )
        .map_err(|e| ReportError::Invalid(format!("segmentation failed: {e}")))?;
    Ok(Masks {
        mean: p.mean_mask_to_image(),
        samples: p
            .sample_logits
            .iter()
            .map(|l| p.logits_to_image(l))
            .collect(),
    })
}

/// A measurement over the mean mask and the samples.
fn interval(
    mean: &MaskMeasures,
    samples: &[MaskMeasures],
    f: impl Fn(&MaskMeasures) -> Option<f64>,
) -> Option<Interval> {
    let v = f(mean)?;
    let s: Vec<f64> = samples.iter().filter_map(&f).collect();
    Some(Interval::from_samples(v, &s))
}

/// Measure the anatomy masks (and the opacity model's masks when given) of one image;
/// the CTR and lung-ratio intervals carry the anatomy model's conformal margins.
pub fn measure(
    img: &XrayImage,
    anatomy: (&Masks, &MeasureModel),
    opacity: Option<(&Masks, AnatomyIds)>,
    cfg: SampleConfig,
) -> Measurements {
    let (masks, model) = anatomy;
    let ids = model.ids;
    let conformal = model.margins(cfg);
    let widen = |i: Option<Interval>, margin: Option<f64>| match (i, margin) {
        (Some(i), Some(m)) => Some(i.widened(m)),
        _ => i,
    };
    let plausibility = plausibility::check(&masks.mean, ids);
    let mean = MaskMeasures::of(&masks.mean, ids);
    let samples: Vec<MaskMeasures> = masks
        .samples
        .iter()
        .map(|m| MaskMeasures::of(m, ids))
        .collect();
    let spacing = img.spacing.map(|s| s.row_mm);
    let px_area = img.spacing.map_or(1.0, |s| s.row_mm * s.col_mm);
    let ok = plausibility.plausible;
    let area = |f: fn(&MaskMeasures) -> usize| {
        ok.then(|| interval(&mean, &samples, |m| Some(f(m) as f64)).map(|i| i.scaled(px_area)))
            .flatten()
    };
    let opacity = opacity.filter(|_| ok).and_then(|(om, oids)| {
        let m = MaskMeasures::of(&om.mean, oids);
        let s: Vec<MaskMeasures> = om
            .samples
            .iter()
            .map(|x| MaskMeasures::of(x, oids))
            .collect();
        Some(OpacityExtent {
            right: interval(&m, &s, |x| x.opacity_right)?,
            left: interval(&m, &s, |x| x.opacity_left)?,
        })
    });
    Measurements {
        width: img.width,
        height: img.height,
        spacing_mm: spacing,
        area_unit: if spacing.is_some() { "mm2" } else { "px" }.into(),
        ctr: widen(
            ok.then(|| interval(&mean, &samples, MaskMeasures::ctr))
                .flatten(),
            conformal.and_then(|c| c.ctr),
        ),
        right_lung_area: area(|m| m.right_lung_pixels),
        left_lung_area: area(|m| m.left_lung_pixels),
        lung_ratio: widen(
            ok.then(|| interval(&mean, &samples, MaskMeasures::lung_ratio))
                .flatten(),
            conformal.and_then(|c| c.lung_ratio),
        ),
        opacity,
        plausibility,
        samples: cfg,
        conformal,
        caveat: PA_AP_CAVEAT.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interval_by_hand() {
        let s: Vec<f64> = (0..=40).map(|i| i as f64 / 40.0).collect();
        let i = Interval::from_samples(0.5, &s);
        // 2.5th percentile of 0, 1/40, ..., 1: position 1.0 -> 0.025
        assert!((i.low - 0.025).abs() < 1e-12 && (i.high - 0.975).abs() < 1e-12);
        assert_eq!(i.side_of(0.5), None);
        assert_eq!(i.side_of(0.01), Some(true));
        assert_eq!(i.side_of(0.99), Some(false));
        // the interval always contains the value it is shown around
        let j = Interval::from_samples(0.9, &[0.1, 0.2]);
        assert_eq!(j.high, 0.9);
        assert_eq!(Interval::from_samples(0.3, &[]).low, 0.3);
    }
}

//! `radlens seg eval`: per-image and summary metrics of a model on a dataset.
//!
//! Protocol: overlap and surface-distance metrics compare the mean prediction,
//! resampled to the original image grid, with the reference at full
//! resolution; distances are in mm when the pixel spacing is known and in
//! pixels otherwise. Distribution metrics (GED^2 with d = 1 - IoU over the
//! dataset's annotated classes, two empty masks scoring IoU 1; sample
//! diversity) and calibration (ECE with 10 bins, NLL) are computed at the
//! model's input resolution against the letterboxed reference. Calibration is
//! skipped for datasets that do not annotate every model class. Summaries give
//! the mean with a 95% percentile-bootstrap interval over images.
//!
//! - [`cases`]: which cases an evaluation uses.
//! - [`summary`]: `summary.json`, written and read as [`EvalSummary`].

pub mod cases;
pub mod summary;

pub use cases::{choose_cases, default_part, EvalCases};
pub use summary::{EvalHeader, EvalSummary};

use crate::data::ClassMap;
use crate::error::{Result, SegError};
use crate::predict::{Prediction, Predictor};
use crate::ssn::CovariancePart;
use radlens_core::observe::Count;
use radlens_core::results::write_csv;
use radlens_core::Observer;
use radlens_eval::calibration::ConfidenceBins;
use radlens_eval::plausibility::sample_flaws;
use radlens_eval::{ged, overlap};
use radlens_io::{Dataset, LabelMap, Sample, Sex, XrayImage};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The evaluation protocol, recorded in every `summary.json`.
pub const PROTOCOL: &str = "Dice/IoU/HD95/ASSD: mean prediction resampled to the original image grid vs the full-resolution reference; HD95 = 95th percentile of pooled boundary-to-boundary distances (both directions), ASSD = mean of the two directed mean distances, in mm when pixel spacing is known, else pixels; undefined (empty mask) distances are left out. GED^2, sample diversity (also of samples varying along only the low-rank factor or only the diagonal) and HM-IoU (Hungarian matching, sets repeated to their least common multiple): d = 1 - IoU over the dataset's annotated classes, two empty masks IoU 1, at the model input resolution. Implausible samples: before cleaning, some annotated structure is missing, has a second 8-connected piece of >= 2% of its pixels, or has Dice < 0.7 against the mean prediction. Masks on the original grid: cleaned at the model input resolution (pixels relabelled by cleaning pinned to their new class), class probabilities resampled bilinearly, then argmax. ECE (10 bins of top-class confidence; the report's reliability diagram pools every image's pixels) and NLL per pixel of the predictive distribution (mean of sample softmaxes for the SSN) at the model input resolution, only when the dataset annotates every model class. Summaries: mean, sd, median, 95% percentile bootstrap (2000 resamples) over images.";

/// One image's metrics for one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    pub id: String,
    pub sex: Option<Sex>,
    pub age_years: Option<f32>,
    pub view: Option<String>,
    pub class: String,
    pub dice: f64,
    pub iou: f64,
    pub hd95: Option<f64>,
    pub assd: Option<f64>,
    pub distance_unit: &'static str,
    /// Pixels of the class in the mean prediction and in the reference (original grid).
    pub predicted_px: usize,
    pub reference_px: usize,
}

/// One image's distribution and calibration metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageRow {
    pub id: String,
    pub ged_squared: Option<f64>,
    pub sample_diversity: Option<f64>,
    /// Hungarian-matched IoU of the samples with the reference.
    pub hm_iou: Option<f64>,
    /// Fraction of samples with an implausible structure ([`radlens_eval::plausibility::SampleFlaws`]).
    pub implausible_sample_fraction: Option<f64>,
    /// Diversity of samples varying along the low-rank factor only.
    pub diversity_low_rank: Option<f64>,
    /// Diversity of samples varying along the diagonal only.
    pub diversity_diagonal: Option<f64>,
    pub ece: Option<f64>,
    pub nll: Option<f64>,
    /// The image's pixels in confidence bins (for the pooled reliability diagram);
    /// `None` as for `ece`.
    #[serde(skip)]
    pub confidence_bins: Option<ConfidenceBins>,
}

/// The distribution metrics of one image's samples against its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleMetrics {
    pub ged_squared: f64,
    pub sample_diversity: f64,
    pub hm_iou: f64,
    pub implausible_sample_fraction: f64,
}

impl SampleMetrics {
    /// The metrics of `pred`'s samples against `reference` (at the model's
    /// resolution) over `structures`; `None` without samples.
    pub fn of(pred: &Prediction, reference: &[u8], structures: &[u8]) -> Option<Self> {
        if pred.samples.is_empty() {
            return None;
        }
        let ss: Vec<&[u8]> = pred.samples.iter().map(Vec::as_slice).collect();
        let g = ged::generalized_energy_distance(&ss, &[reference], structures);
        let size = pred.letterbox.size;
        let implausible = (0..ss.len())
            .filter(|&i| {
                sample_flaws(&pred.raw_sample(i), &pred.mean_mask, size, structures).implausible()
            })
            .count();
        Some(Self {
            ged_squared: g.ged_squared,
            sample_diversity: g.diversity,
            hm_iou: ged::hungarian_matched_iou(&ss, &[reference], structures),
            implausible_sample_fraction: implausible as f64 / ss.len() as f64,
        })
    }
}

/// Everything an evaluation produced.
pub struct Evaluation {
    pub classes: Vec<ClassRow>,
    pub images: Vec<ImageRow>,
    pub samples: usize,
}

/// Progress of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub enum EvalEvent {
    /// Case `id` is being evaluated; `progress.done` cases are finished.
    CaseStarted { id: String, progress: Count },
    /// One more case is evaluated.
    CaseFinished(Count),
}

/// The mapping of `dataset`'s classes to the model's; an error when it annotates
/// none of them.
pub(crate) fn class_map(predictor: &Predictor, dataset: &Dataset) -> Result<ClassMap> {
    let model_classes = predictor.model.classes();
    let map = ClassMap::new(&dataset.classes, model_classes);
    if map.annotated.is_empty() {
        return Err(SegError::Invalid(format!(
            "dataset {} annotates none of the model's classes ({})",
            dataset.spec_name,
            model_classes.names[1..].join(", ")
        )));
    }
    Ok(map)
}

/// Evaluate `predictor` on `cases` of `dataset` with `samples` SSN samples per image at `temperature`.
pub fn evaluate(
    predictor: &Predictor,
    dataset: &Dataset,
    cases: &[&Sample],
    samples: usize,
    temperature: f64,
    observer: &dyn Observer<EvalEvent>,
) -> Result<Evaluation> {
    let map = class_map(predictor, dataset)?;
    let samples = if predictor.model.is_stochastic() {
        samples
    } else {
        0
    };
    let scored = score_cases(cases, &map, observer, |k, case, img, reference| {
        let scoring = ImageScoring {
            predictor,
            map: &map,
            samples,
            temperature,
            seed: k as u64,
        };
        scoring.score(case, img, reference)
    })?;
    let mut evaluation = Evaluation {
        classes: Vec::new(),
        images: Vec::new(),
        samples,
    };
    for (classes, image) in scored {
        evaluation.classes.extend(classes);
        evaluation.images.push(image);
    }
    Ok(evaluation)
}

/// Runs `score` on every case of `cases` (loaded through `map`) in parallel and returns
/// the results in case order, reporting each case to `observer`. `score` gets the case's
/// index, which seeds anything random so that results do not depend on scheduling.
pub(crate) fn score_cases<T: Send>(
    cases: &[&Sample],
    map: &ClassMap,
    observer: &dyn Observer<EvalEvent>,
    score: impl Fn(usize, &Sample, &XrayImage, &LabelMap) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let count = |done: usize| Count {
        done: done as u64,
        total: cases.len() as u64,
    };
    let finished = AtomicUsize::new(0);
    cases
        .par_iter()
        .enumerate()
        .map(|(k, case)| {
            observer.observe(&EvalEvent::CaseStarted {
                id: case.id.clone(),
                progress: count(finished.load(Ordering::Relaxed)),
            });
            let (img, reference) = map.load_case(case)?;
            let result = score(k, case, &img, &reference)?;
            let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
            observer.observe(&EvalEvent::CaseFinished(count(done)));
            Ok(result)
        })
        .collect()
}

/// How one image is scored: the model, the class mapping and the sampling.
pub(crate) struct ImageScoring<'a> {
    pub predictor: &'a Predictor,
    pub map: &'a ClassMap,
    /// SSN samples (0 for a plain model).
    pub samples: usize,
    pub temperature: f64,
    pub seed: u64,
}

impl ImageScoring<'_> {
    /// The per-class and per-image metrics of `img` of case `case` against `reference`
    /// (already in model class ids).
    pub fn score(
        &self,
        case: &Sample,
        img: &XrayImage,
        reference: &LabelMap,
    ) -> Result<(Vec<ClassRow>, ImageRow)> {
        let (predictor, map, samples) = (self.predictor, self.map, self.samples);
        let model_classes = predictor.model.classes();
        let all_annotated = map.annotated.len() + 1 == model_classes.len();
        let out = predictor.forward(img)?;
        let pred = predictor.draw(&out, samples, self.temperature, self.seed)?;
        let full = pred.mean_mask_to_image();
        let (row_mm, col_mm, unit) = match img.spacing {
            Some(sp) => (sp.row_mm, sp.col_mm, "mm"),
            None => (1.0, 1.0, "px"),
        };
        let classes = map
            .annotated
            .iter()
            .map(|&c| {
                let (p, y) = (full.class_mask(c), reference.class_mask(c));
                let d =
                    radlens_eval::surface_distances(&p, &y, img.width, img.height, row_mm, col_mm);
                ClassRow {
                    id: case.id.clone(),
                    sex: case.attributes.sex(),
                    age_years: case.attributes.age_years(),
                    view: case.attributes.view().map(str::to_string),
                    class: model_classes.name(c).to_string(),
                    dice: overlap::dice(&p, &y),
                    iou: overlap::iou(&p, &y),
                    hd95: d.map(|d| d.hd95),
                    assd: d.map(|d| d.assd),
                    distance_unit: unit,
                    predicted_px: p.iter().filter(|&&v| v).count(),
                    reference_px: y.iter().filter(|&&v| v).count(),
                }
            })
            .collect();
        let small_ref = pred.letterbox.labels(reference).labels;
        let metrics = SampleMetrics::of(&pred, &small_ref, &map.annotated);
        let part_diversity = |part| -> Result<Option<f64>> {
            if samples == 0 {
                return Ok(None);
            }
            let masks = predictor.draw_part(&out, samples, self.temperature, part, self.seed)?;
            let ms: Vec<&[u8]> = masks.iter().map(Vec::as_slice).collect();
            let g = ged::generalized_energy_distance(&ms, &[&small_ref], &map.annotated);
            Ok(Some(g.diversity))
        };
        let (bins, nll) = if all_annotated {
            let mut bins = ConfidenceBins::new(ECE_BINS);
            bins.add(&pred.probs, pred.classes, &small_ref);
            let nll = radlens_eval::negative_log_likelihood(&pred.probs, &small_ref);
            (Some(bins), Some(nll))
        } else {
            (None, None)
        };
        let image = ImageRow {
            id: case.id.clone(),
            ged_squared: metrics.map(|m| m.ged_squared),
            sample_diversity: metrics.map(|m| m.sample_diversity),
            hm_iou: metrics.map(|m| m.hm_iou),
            implausible_sample_fraction: metrics.map(|m| m.implausible_sample_fraction),
            diversity_low_rank: part_diversity(CovariancePart::LowRank)?,
            diversity_diagonal: part_diversity(CovariancePart::Diagonal)?,
            ece: bins.as_ref().map(ConfidenceBins::ece),
            nll,
            confidence_bins: bins,
        };
        Ok((classes, image))
    }
}

/// Confidence bins of ECE and the reliability diagram.
pub const ECE_BINS: usize = 10;

/// The metrics of every image and class, in an evaluation's output folder.
pub const PER_IMAGE_FILE: &str = "per_image.csv";
/// The [`EvalSummary`], in an evaluation's output folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// Writes `per_image.csv`, `summary.json` and `report.html` into `out`.
pub fn write_results(out: &Path, evaluation: &Evaluation, summary: &EvalSummary) -> Result<()> {
    write_per_image(out, evaluation)?;
    summary.write(&out.join(SUMMARY_FILE))?;
    crate::html::write_report(out, &crate::html::eval_report(summary, evaluation)?)
}

/// Writes `per_image.csv` into `out`.
pub fn write_per_image(out: &Path, evaluation: &Evaluation) -> Result<()> {
    Ok(write_csv(
        &out.join(PER_IMAGE_FILE),
        &PER_IMAGE_HEADER,
        evaluation.per_image_rows(),
    )?)
}

const PER_IMAGE_HEADER: [&str; 18] = [
    "id",
    "sex",
    "age_years",
    "view",
    "class",
    "dice",
    "iou",
    "hd95",
    "assd",
    "distance_unit",
    "ged_squared",
    "sample_diversity",
    "hm_iou",
    "implausible_sample_fraction",
    "diversity_low_rank",
    "diversity_diagonal",
    "ece",
    "nll",
];

impl Evaluation {
    /// The rows of `per_image.csv`: one per image and class, image-level metrics repeated.
    fn per_image_rows(&self) -> impl Iterator<Item = [String; 18]> + '_ {
        let mut images: HashMap<&str, &ImageRow> = HashMap::new();
        for i in &self.images {
            images.entry(&i.id).or_insert(i);
        }
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        self.classes.iter().map(move |r| {
            let img = images.get(r.id.as_str());
            let image_metric = |f: fn(&ImageRow) -> Option<f64>| opt(img.and_then(|i| f(i)));
            [
                r.id.clone(),
                r.sex.map(Sex::as_str).unwrap_or_default().to_string(),
                r.age_years.map(|a| a.to_string()).unwrap_or_default(),
                r.view.clone().unwrap_or_default(),
                r.class.clone(),
                format!("{:.6}", r.dice),
                format!("{:.6}", r.iou),
                opt(r.hd95),
                opt(r.assd),
                r.distance_unit.to_string(),
                image_metric(|i| i.ged_squared),
                image_metric(|i| i.sample_diversity),
                image_metric(|i| i.hm_iou),
                image_metric(|i| i.implausible_sample_fraction),
                image_metric(|i| i.diversity_low_rank),
                image_metric(|i| i.diversity_diagonal),
                image_metric(|i| i.ece),
                image_metric(|i| i.nll),
            ]
        })
    }
}

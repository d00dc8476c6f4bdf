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

use crate::data::ClassMap;

/// The evaluation protocol, recorded in every `summary.json`.
pub const PROTOCOL: &str = "Dice/IoU/HD95/ASSD: mean prediction resampled to the original image grid vs the full-resolution reference; HD95 = 95th percentile of pooled boundary-to-boundary distances (both directions), ASSD = mean of the two directed mean distances, in mm when pixel spacing is known, else pixels; undefined (empty mask) distances are left out. GED^2 and sample diversity: d = 1 - IoU over the dataset's annotated classes, two empty masks IoU 1, at the model input resolution. ECE (10 bins of top-class confidence) and NLL per pixel of the predictive distribution (mean of sample softmaxes for the SSN) at the model input resolution, only when the dataset annotates every model class. Summaries: mean, sd, median, 95% percentile bootstrap (2000 resamples) over images.";
use crate::error::{Result, SegError};
use crate::predict::Predictor;
use indicatif::{ProgressBar, ProgressStyle};
use radlens_eval::{ged, overlap, Summary};
use radlens_io::{Dataset, Sample, Sex};
use serde::Serialize;
use std::collections::BTreeMap;

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
}

/// One image's distribution and calibration metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub id: String,
    pub ged_squared: Option<f64>,
    pub sample_diversity: Option<f64>,
    pub ece: Option<f64>,
    pub nll: Option<f64>,
}

/// Everything an evaluation produced.
pub struct Evaluation {
    pub classes: Vec<ClassRow>,
    pub images: Vec<ImageRow>,
    pub samples: usize,
}

/// Evaluate `predictor` on `cases` of `dataset` with `samples` SSN samples per image at `temperature`.
pub fn evaluate(
    predictor: &Predictor,
    dataset: &Dataset,
    cases: &[&Sample],
    samples: usize,
    temperature: f64,
) -> Result<Evaluation> {
    let model_classes = &predictor.model.config.classes;
    let map = ClassMap::new(&dataset.classes, model_classes);
    if map.annotated.is_empty() {
        return Err(SegError::Invalid(format!(
            "dataset {} annotates none of the model's classes ({})",
            dataset.spec_name,
            model_classes.names[1..].join(", ")
        )));
    }
    let all_annotated = map.annotated.len() + 1 == model_classes.len();
    let samples = if predictor.model.config.is_stochastic() {
        samples
    } else {
        0
    };
    let pb = ProgressBar::new(cases.len() as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "evaluating {bar:30} {pos}/{len} {wide_msg} [{elapsed}<{eta}]",
        )
        .expect("template"),
    );
    let mut out = Evaluation {
        classes: Vec::new(),
        images: Vec::new(),
        samples,
    };
    for (k, s) in cases.iter().enumerate() {
        pb.set_message(s.id.clone());
        let img = s.load_image()?;
        let mut reference = s.load_labels((img.width, img.height))?;
        map.apply(&mut reference.labels);
        let pred = predictor.predict(&img, samples, temperature, k as u64)?;
        let full = pred.mean_mask_to_image();
        let (row_mm, col_mm, unit) = match img.spacing {
            Some(sp) => (sp.row_mm, sp.col_mm, "mm"),
            None => (1.0, 1.0, "px"),
        };
        for &c in &map.annotated {
            let (p, y) = (full.class_mask(c), reference.class_mask(c));
            let d = radlens_eval::surface_distances(&p, &y, img.width, img.height, row_mm, col_mm);
            out.classes.push(ClassRow {
                id: s.id.clone(),
                sex: s.attributes.sex(),
                age_years: s.attributes.age_years(),
                view: s.attributes.view().map(str::to_string),
                class: model_classes.name(c).to_string(),
                dice: overlap::dice(&p, &y),
                iou: overlap::iou(&p, &y),
                hd95: d.map(|d| d.hd95),
                assd: d.map(|d| d.assd),
                distance_unit: unit,
            });
        }
        let small_ref = pred.letterbox.labels(&reference).labels;
        let (ged_squared, sample_diversity) = if pred.samples.is_empty() {
            (None, None)
        } else {
            let ss: Vec<&[u8]> = pred.samples.iter().map(Vec::as_slice).collect();
            let g = ged::generalized_energy_distance(&ss, &[&small_ref], &map.annotated);
            (Some(g.ged_squared), Some(g.diversity))
        };
        let (ece, nll) = if all_annotated {
            (
                Some(radlens_eval::expected_calibration_error(
                    &pred.probs,
                    pred.classes,
                    &small_ref,
                    10,
                )),
                Some(radlens_eval::negative_log_likelihood(
                    &pred.probs,
                    &small_ref,
                )),
            )
        } else {
            (None, None)
        };
        out.images.push(ImageRow {
            id: s.id.clone(),
            ged_squared,
            sample_diversity,
            ece,
            nll,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Age bands for subgroup summaries.
fn age_band(age: Option<f32>) -> Option<&'static str> {
    Some(match age? {
        a if a < 40.0 => "age<40",
        a if a < 60.0 => "age40-59",
        _ => "age>=60",
    })
}

impl Evaluation {
    /// Summary of one metric per class over images.
    fn per_class(
        &self,
        rows: &[&ClassRow],
        metric: impl Fn(&ClassRow) -> Option<f64>,
        seed: u64,
    ) -> BTreeMap<String, Option<Summary>> {
        let mut by_class: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in rows {
            by_class
                .entry(r.class.clone())
                .or_default()
                .push(metric(r).unwrap_or(f64::NAN));
        }
        by_class
            .into_iter()
            .map(|(c, v)| (c, Summary::of(&v, seed)))
            .collect()
    }

    /// The `summary.json` document.
    pub fn summary(&self, header: serde_json::Value) -> serde_json::Value {
        let all: Vec<&ClassRow> = self.classes.iter().collect();
        let metric_table = |rows: &[&ClassRow]| {
            serde_json::json!({
                "dice": self.per_class(rows, |r| Some(r.dice), 1),
                "iou": self.per_class(rows, |r| Some(r.iou), 2),
                "hd95": self.per_class(rows, |r| r.hd95, 3),
                "assd": self.per_class(rows, |r| r.assd, 4),
            })
        };
        let mut groups: BTreeMap<String, Vec<&ClassRow>> = BTreeMap::new();
        for r in &self.classes {
            if let Some(sex) = r.sex {
                groups
                    .entry(format!(
                        "sex={}",
                        if sex == Sex::Male { "male" } else { "female" }
                    ))
                    .or_default()
                    .push(r);
            }
            if let Some(b) = age_band(r.age_years) {
                groups.entry(b.to_string()).or_default().push(r);
            }
        }
        let subgroups: BTreeMap<String, serde_json::Value> = groups
            .iter()
            .map(|(g, rows)| {
                let n = rows.iter().map(|r| &r.id).collect::<std::collections::BTreeSet<_>>().len();
                (g.clone(), serde_json::json!({ "images": n, "dice": self.per_class(rows, |r| Some(r.dice), 5) }))
            })
            .collect();
        let image_metric = |f: fn(&ImageRow) -> Option<f64>, seed| {
            let v: Vec<f64> = self
                .images
                .iter()
                .map(|r| f(r).unwrap_or(f64::NAN))
                .collect();
            Summary::of(&v, seed)
        };
        let units: std::collections::BTreeSet<&str> =
            self.classes.iter().map(|r| r.distance_unit).collect();
        serde_json::json!({
            "header": header,
            "images": self.images.len(),
            "distance_unit": units.into_iter().collect::<Vec<_>>().join("+"),
            "samples_per_image": self.samples,
            "metrics": metric_table(&all),
            "stochastic": {
                "ged_squared": image_metric(|r| r.ged_squared, 6),
                "sample_diversity": image_metric(|r| r.sample_diversity, 7),
            },
            "calibration": {
                "ece_10_bins": image_metric(|r| r.ece, 8),
                "nll_per_pixel": image_metric(|r| r.nll, 9),
            },
            "subgroups": subgroups,
        })
    }

    /// `per_image.csv`: one row per image and class, image-level metrics repeated.
    pub fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let mut s = String::from("id,sex,age_years,view,class,dice,iou,hd95,assd,distance_unit,ged_squared,sample_diversity,ece,nll\n");
        for r in &self.classes {
            let img = self
                .images
                .iter()
                .find(|i| i.id == r.id)
                .expect("image row");
            let sex = r
                .sex
                .map(|x| if x == Sex::Male { "male" } else { "female" })
                .unwrap_or("");
            s.push_str(&format!(
                "{},{},{},{},{},{:.6},{:.6},{},{},{},{},{},{},{}\n",
                csv_field(&r.id),
                sex,
                r.age_years.map(|a| a.to_string()).unwrap_or_default(),
                csv_field(r.view.as_deref().unwrap_or("")),
                r.class,
                r.dice,
                r.iou,
                opt(r.hd95),
                opt(r.assd),
                r.distance_unit,
                opt(img.ged_squared),
                opt(img.sample_diversity),
                opt(img.ece),
                opt(img.nll)
            ));
        }
        s
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

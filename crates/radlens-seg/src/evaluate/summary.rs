//! `summary.json`: an evaluation summarised over images, written and read back as
//! [`EvalSummary`].

use super::{ClassRow, Evaluation, ImageRow, PROTOCOL};
use crate::error::Result;
use crate::sorted_json::write_sorted_json;
use radlens_core::results::read_json;
use radlens_eval::calibration::ConfidenceBins;
use radlens_eval::Summary;
use radlens_io::split::SplitPart;
use radlens_io::DatasetSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What was evaluated, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalHeader {
    /// The model's run folder, as given.
    pub model: String,
    /// The evaluation data as `kind:dir`.
    pub dataset: String,
    pub split: SplitPart,
    /// The model's square input side, pixels.
    pub model_input: usize,
    pub temperature: f64,
    /// SemanticGAN: test-time optimisation steps per image (0 = encoder only); absent for
    /// a U-Net.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inversion_steps: Option<usize>,
    /// The evaluation protocol ([`PROTOCOL`]).
    pub protocol: String,
}

impl EvalHeader {
    /// The header of an evaluation, under the current [`PROTOCOL`].
    pub fn new(
        model: &Path,
        dataset: &DatasetSpec,
        split: SplitPart,
        model_input: usize,
        temperature: f64,
    ) -> Self {
        Self {
            model: model.display().to_string(),
            dataset: dataset.to_string(),
            split,
            model_input,
            temperature,
            inversion_steps: None,
            protocol: PROTOCOL.to_string(),
        }
    }
}

/// One metric summarised per class name; `None` where no image defines it (e.g. HD95
/// when every mask is empty).
pub type PerClass = BTreeMap<String, Option<Summary>>;

/// Overlap and surface-distance metrics per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricTables {
    pub dice: PerClass,
    pub iou: PerClass,
    pub hd95: PerClass,
    pub assd: PerClass,
}

/// Metrics of the sample distribution (`None` without samples; summaries written
/// before a metric existed read back as `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StochasticMetrics {
    pub ged_squared: Option<Summary>,
    pub sample_diversity: Option<Summary>,
    #[serde(default)]
    pub hm_iou: Option<Summary>,
    /// Per image, the fraction of its samples that are implausible.
    #[serde(default)]
    pub implausible_sample_fraction: Option<Summary>,
    #[serde(default)]
    pub diversity_low_rank: Option<Summary>,
    #[serde(default)]
    pub diversity_diagonal: Option<Summary>,
}

/// Calibration of the predictive distribution (`None` when the dataset does not
/// annotate every model class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationMetrics {
    pub ece_10_bins: Option<Summary>,
    pub nll_per_pixel: Option<Summary>,
    /// Every image's pixels pooled into the ECE bins: the reliability diagram.
    #[serde(default)]
    pub reliability: Option<ConfidenceBins>,
}

/// Dice within one subgroup of patients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subgroup {
    pub images: usize,
    pub dice: PerClass,
}

/// The content of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub header: EvalHeader,
    pub images: usize,
    /// `mm`, `px`, or both joined by `+` when only some images record their spacing.
    pub distance_unit: String,
    pub samples_per_image: usize,
    pub metrics: MetricTables,
    pub stochastic: StochasticMetrics,
    pub calibration: CalibrationMetrics,
    /// Keyed `sex=female`, `sex=male`, `age<40`, `age40-59`, `age>=60`, for the
    /// groups with any images.
    pub subgroups: BTreeMap<String, Subgroup>,
}

impl EvalSummary {
    /// Writes `summary.json` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_sorted_json(path, self)
    }

    /// Reads a `summary.json`, naming the file in any error.
    pub fn read(path: &Path) -> Result<Self> {
        Ok(read_json(path)?)
    }
}

impl Evaluation {
    /// Every image's confidence bins added up; `None` when no image has them.
    fn pooled_confidence_bins(&self) -> Option<ConfidenceBins> {
        let mut bins = self
            .images
            .iter()
            .filter_map(|i| i.confidence_bins.as_ref());
        let mut total = bins.next()?.clone();
        for b in bins {
            total.merge(b);
        }
        Some(total)
    }

    /// Summaries over images: mean, sd, median and a seeded bootstrap interval, each
    /// table with its own seed so that adding one does not move the others.
    pub fn summary(&self, header: EvalHeader) -> EvalSummary {
        let all: Vec<&ClassRow> = self.classes.iter().collect();
        let mut groups: BTreeMap<String, Vec<&ClassRow>> = BTreeMap::new();
        for r in &self.classes {
            if let Some(sex) = r.sex {
                let group = format!("sex={}", sex.as_str());
                groups.entry(group).or_default().push(r);
            }
            if let Some(age) = r.age_years {
                let group = format!("age{}", radlens_io::attributes::age_band(age));
                groups.entry(group).or_default().push(r);
            }
        }
        let subgroups = groups
            .into_iter()
            .map(|(g, rows)| {
                let images = rows.iter().map(|r| &r.id).collect::<BTreeSet<_>>().len();
                let dice = per_class(&rows, |r| Some(r.dice), 5);
                (g, Subgroup { images, dice })
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
        let units: BTreeSet<&str> = self.classes.iter().map(|r| r.distance_unit).collect();
        EvalSummary {
            header,
            images: self.images.len(),
            distance_unit: units.into_iter().collect::<Vec<_>>().join("+"),
            samples_per_image: self.samples,
            metrics: MetricTables {
                dice: per_class(&all, |r| Some(r.dice), 1),
                iou: per_class(&all, |r| Some(r.iou), 2),
                hd95: per_class(&all, |r| r.hd95, 3),
                assd: per_class(&all, |r| r.assd, 4),
            },
            stochastic: StochasticMetrics {
                ged_squared: image_metric(|r| r.ged_squared, 6),
                sample_diversity: image_metric(|r| r.sample_diversity, 7),
                hm_iou: image_metric(|r| r.hm_iou, 10),
                implausible_sample_fraction: image_metric(|r| r.implausible_sample_fraction, 11),
                diversity_low_rank: image_metric(|r| r.diversity_low_rank, 12),
                diversity_diagonal: image_metric(|r| r.diversity_diagonal, 13),
            },
            calibration: CalibrationMetrics {
                ece_10_bins: image_metric(|r| r.ece, 8),
                nll_per_pixel: image_metric(|r| r.nll, 9),
                reliability: self.pooled_confidence_bins(),
            },
            subgroups,
        }
    }
}

/// Summary of one metric per class over `rows`.
fn per_class(rows: &[&ClassRow], metric: impl Fn(&ClassRow) -> Option<f64>, seed: u64) -> PerClass {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{write_results, PER_IMAGE_FILE, SUMMARY_FILE};
    use radlens_io::Sex;

    fn row(id: &str, class: &str, dice: f64, sex: Option<Sex>, age: Option<f32>) -> ClassRow {
        ClassRow {
            id: id.into(),
            sex,
            age_years: age,
            view: Some("PA".into()),
            class: class.into(),
            dice,
            iou: dice / (2.0 - dice),
            hd95: (dice > 0.0).then_some(3.0),
            assd: None,
            distance_unit: "mm",
            predicted_px: 10,
            reference_px: 12,
        }
    }

    fn image(id: &str, ged: Option<f64>) -> ImageRow {
        ImageRow {
            id: id.into(),
            ged_squared: ged,
            sample_diversity: ged,
            implausible_sample_fraction: ged.map(|_| 0.25),
            ..ImageRow::default()
        }
    }

    #[test]
    fn summary_round_trips_with_sorted_keys_and_csv_rows() {
        let ev = Evaluation {
            classes: vec![
                row("a,1", "lung", 0.9, Some(Sex::Female), Some(35.0)),
                row("a,1", "heart", 0.8, Some(Sex::Female), Some(35.0)),
                row("b", "lung", 0.7, None, Some(61.5)),
                row("b", "heart", 0.0, None, Some(61.5)),
            ],
            images: vec![image("a,1", Some(0.2)), image("b", None)],
            samples: 4,
        };
        let header = EvalHeader::new(
            Path::new("models/m"),
            &"jsrt:data/jsrt".parse().unwrap(),
            SplitPart::Val,
            32,
            1.0,
        );
        let s = ev.summary(header);
        assert_eq!((s.images, s.distance_unit.as_str()), (2, "mm"));
        assert_eq!(s.metrics.dice.keys().collect::<Vec<_>>(), ["heart", "lung"]);
        assert_eq!(s.metrics.hd95["heart"].as_ref().unwrap().n, 1);
        assert_eq!(s.metrics.assd["lung"], None);
        assert_eq!(s.stochastic.ged_squared.as_ref().unwrap().n, 1);
        assert_eq!(
            s.stochastic
                .implausible_sample_fraction
                .as_ref()
                .unwrap()
                .mean,
            0.25
        );
        assert_eq!(s.stochastic.hm_iou, None);
        assert_eq!(s.calibration.ece_10_bins, None);
        let groups: Vec<_> = s
            .subgroups
            .iter()
            .map(|(g, v)| (g.as_str(), v.images))
            .collect();
        assert_eq!(groups, [("age<40", 1), ("age>=60", 1), ("sex=female", 1)]);

        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), &ev, &s).unwrap();
        let html = std::fs::read_to_string(dir.path().join(crate::html::REPORT_FILE)).unwrap();
        assert!(html.contains("Dice per image") && html.contains("<svg"));
        let text = std::fs::read_to_string(dir.path().join(SUMMARY_FILE)).unwrap();
        assert!(
            text.starts_with("{\n  \"calibration\": {\n    \"ece_10_bins\": null,"),
            "{text}"
        );
        assert!(text.contains("\"split\": \"val\""), "{text}");
        assert_eq!(
            EvalSummary::read(&dir.path().join(SUMMARY_FILE)).unwrap(),
            s
        );
        let csv = std::fs::read_to_string(dir.path().join(PER_IMAGE_FILE)).unwrap();
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines[0], "id,sex,age_years,view,class,dice,iou,hd95,assd,distance_unit,ged_squared,sample_diversity,hm_iou,implausible_sample_fraction,diversity_low_rank,diversity_diagonal,ece,nll");
        assert_eq!(
            lines[1],
            "\"a,1\",female,35,PA,lung,0.900000,0.818182,3.000000,,mm,0.200000,0.200000,,0.250000,,,,"
        );
        assert_eq!(lines[4], "b,,61.5,PA,heart,0.000000,0.000000,,,mm,,,,,,,,");
    }

    #[test]
    fn a_broken_summary_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SUMMARY_FILE);
        std::fs::write(&p, "{\"images\": 3}").unwrap();
        let e = EvalSummary::read(&p).unwrap_err().to_string();
        assert!(e.contains("summary.json"), "{e}");
    }
}

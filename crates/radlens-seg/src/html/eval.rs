//! `seg eval`'s report: per-class metrics with intervals, per-image Dice
//! distributions, the sample-distribution metrics and the reliability diagram.

use crate::error::Result;
use crate::evaluate::summary::{EvalSummary, PerClass};
use crate::evaluate::Evaluation;
use radlens_eval::html::{fmt_ci, Page};
use radlens_eval::plot::{self, Axes, ReliabilityPoint};
use radlens_eval::Summary;
use std::collections::BTreeMap;

fn cell(s: &Option<Summary>, digits: usize) -> String {
    match s {
        Some(s) => fmt_ci(s.mean, Some([s.ci95_low, s.ci95_high]), digits),
        None => "-".into(),
    }
}

fn class_cell(t: &PerClass, class: &str, digits: usize) -> String {
    cell(t.get(class).unwrap_or(&None), digits)
}

/// The report of `summary`, the summary of `evaluation`.
pub fn eval_report(summary: &EvalSummary, evaluation: &Evaluation) -> Result<String> {
    let h = &summary.header;
    let mut page = Page::new(&format!(
        "Segmentation evaluation: {} on {}",
        h.model, h.dataset
    ));
    page.table(
        &["setting", "value"],
        &[
            vec!["model".to_string(), h.model.clone()],
            vec![
                "data".to_string(),
                format!("{} ({:?} split)", h.dataset, h.split),
            ],
            vec!["images".to_string(), summary.images.to_string()],
            vec![
                "samples per image, temperature".to_string(),
                format!("{}, {:.3}", summary.samples_per_image, h.temperature),
            ],
            vec!["model input".to_string(), format!("{} px", h.model_input)],
        ],
    );
    let m = &summary.metrics;
    let unit = &summary.distance_unit;
    page.heading("Mean prediction per structure (mean [95% bootstrap CI] over images)");
    let rows: Vec<Vec<String>> = m
        .dice
        .keys()
        .map(|c| {
            vec![
                c.clone(),
                class_cell(&m.dice, c, 4),
                class_cell(&m.iou, c, 4),
                class_cell(&m.hd95, c, 2),
                class_cell(&m.assd, c, 2),
            ]
        })
        .collect();
    let hd95 = format!("HD95 ({unit})");
    let assd = format!("ASSD ({unit})");
    page.table(&["structure", "Dice", "IoU", &hd95, &assd], &rows);
    let mut per_class: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &evaluation.classes {
        per_class.entry(&r.class).or_default().push(r.dice);
    }
    let groups: Vec<(String, Vec<f64>)> = per_class
        .into_iter()
        .map(|(c, v)| (c.to_string(), v))
        .collect();
    let mut figures = vec![(
        plot::distributions(
            Axes {
                title: "Dice per image",
                x: "structure",
                y: "Dice",
            },
            &groups,
        )?,
        "Each point is one image; boxes show quartiles, whiskers 1.5 IQR.".to_string(),
    )];
    if let Some(bins) = &summary.calibration.reliability {
        let points: Vec<ReliabilityPoint> = bins
            .points()
            .into_iter()
            .map(|(confidence, accuracy, weight)| ReliabilityPoint {
                confidence,
                accuracy,
                weight,
            })
            .collect();
        figures.push((
            plot::reliability("Reliability (all pixels pooled)", &[(h.model.clone(), points)])?,
            format!(
                "Accuracy against confidence of the predictive distribution per confidence bin, every image's pixels pooled (ECE {:.4}); point area by the bin's share of pixels.",
                bins.ece()
            ),
        ));
    }
    page.figures(&figures);
    let s = &summary.stochastic;
    let c = &summary.calibration;
    let stochastic = [
        ("GED²", &s.ged_squared),
        ("sample diversity", &s.sample_diversity),
        ("diversity, low-rank factor only", &s.diversity_low_rank),
        ("diversity, diagonal only", &s.diversity_diagonal),
        ("HM-IoU", &s.hm_iou),
        (
            "implausible sample fraction",
            &s.implausible_sample_fraction,
        ),
        ("ECE (10 bins), mean over images", &c.ece_10_bins),
        ("NLL per pixel", &c.nll_per_pixel),
    ];
    let rows: Vec<Vec<String>> = stochastic
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, v)| vec![name.to_string(), cell(v, 4)])
        .collect();
    if !rows.is_empty() {
        page.heading("Sample distribution and calibration");
        page.table(&["metric", "mean [95% CI]"], &rows);
    }
    page.heading("Protocol");
    page.note(&h.protocol);
    Ok(page.finish())
}

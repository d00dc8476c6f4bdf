//! `seg robustness`'s report: Dice against severity per perturbation (one line per
//! model, bootstrap bands), the corruption errors as a heatmap, and the paired
//! comparison with its corrected p-values.

use super::estimate;
use crate::error::Result;
use crate::robustness::{LevelSummary, RobustnessSummary};
use radlens_eval::html::{fmt_ci, fmt_opt, Page};
use radlens_eval::plot::{self, Axes, BandSeries};

/// Sum over levels of (1 - Dice): Hendrycks & Dietterich's corruption error before
/// it is divided by the reference model's.
fn unnormalised_corruption_error(levels: &[LevelSummary]) -> f64 {
    levels.iter().map(|l| 1.0 - l.dice_mean).sum()
}

/// The report of `summary`.
pub fn robustness_report(summary: &RobustnessSummary) -> Result<String> {
    let models: Vec<&String> = summary.models.keys().collect();
    let mut page = Page::new(&format!("Robustness on {}", summary.dataset));
    page.paragraph(&format!(
        "{} images; models: {}; perturbations seeded from {}.",
        summary.images,
        models
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        summary.seed
    ));
    page.heading("Clean films");
    let rows: Vec<Vec<String>> = summary
        .models
        .iter()
        .map(|(name, m)| {
            vec![
                name.clone(),
                fmt_ci(m.clean.dice_mean, Some(m.clean.dice_ci), 4),
                fmt_ci(m.clean.hd95_mean.unwrap_or(f64::NAN), m.clean.hd95_ci, 2),
                fmt_opt(m.clean.ece, 4),
                fmt_opt(m.clean.sample_diversity, 4),
            ]
        })
        .collect();
    page.table(&["model", "Dice", "HD95", "ECE", "sample diversity"], &rows);

    page.heading("Dice against severity");
    let mut figures = Vec::new();
    for p in summary.perturbations.keys() {
        let series: Vec<BandSeries> = summary
            .models
            .iter()
            .map(|(name, m)| {
                let clean = (0.0, estimate(m.clean.dice_mean, Some(m.clean.dice_ci)));
                let levels = m
                    .perturbations
                    .get(p)
                    .into_iter()
                    .flatten()
                    .map(|l| (l.level as f64, estimate(l.dice_mean, Some(l.dice_ci))));
                BandSeries {
                    name: name.clone(),
                    points: std::iter::once(clean).chain(levels).collect(),
                }
            })
            .collect();
        let params: Vec<String> = summary.perturbations[p]
            .iter()
            .map(|l| format!("{}", l.param))
            .collect();
        let svg = plot::lines_with_bands(
            Axes {
                title: p,
                x: "severity level (0 = clean)",
                y: "mean Dice",
            },
            &series,
        )?;
        figures.push((
            svg,
            format!(
                "{p}: parameters at levels 1-5: {}; bands are 95% bootstrap intervals.",
                params.join(", ")
            ),
        ));
    }
    page.figures(&figures);

    page.heading("Corruption error");
    let perturbations: Vec<String> = summary.perturbations.keys().cloned().collect();
    let values: Vec<Vec<f64>> = perturbations
        .iter()
        .map(|p| {
            summary
                .models
                .values()
                .map(|m| {
                    m.perturbations
                        .get(p)
                        .map_or(f64::NAN, |l| unnormalised_corruption_error(l))
                })
                .collect()
        })
        .collect();
    let columns: Vec<String> = models.iter().map(|m| m.to_string()).collect();
    let heat = plot::heatmap(
        "sum over levels of (1 - Dice)",
        &perturbations,
        &columns,
        &values,
    )?;
    page.figures(&[(
        heat,
        "Unnormalised corruption error per model and perturbation (lower is more robust).".into(),
    )]);

    if let Some(c) = &summary.comparison {
        page.heading(&format!("{} against {} (paired)", c.model, c.reference));
        page.paragraph(&format!(
            "Mean corruption error of {} relative to {}: {:.3} (below 1: more robust).",
            c.model, c.reference, c.mean_corruption_error
        ));
        let fmt_level = |l: &crate::robustness::PairedLevel| {
            let star = if l.p_holm.is_some_and(|p| p < 0.05) {
                " *"
            } else {
                ""
            };
            format!(
                "{:+.4} [{:+.4}, {:+.4}] p={}{star}",
                l.delta_dice_mean,
                l.delta_dice_ci[0],
                l.delta_dice_ci[1],
                fmt_opt(l.p_holm, 3)
            )
        };
        let mut rows = vec![vec![
            "clean".to_string(),
            "-".to_string(),
            fmt_level(&c.clean),
        ]];
        for (p, levels) in &c.perturbations {
            for l in levels {
                rows.push(vec![
                    format!("{p} level {}", l.level),
                    format!(
                        "{:.3}",
                        c.corruption_error.get(p).copied().unwrap_or(f64::NAN)
                    ),
                    fmt_level(l),
                ]);
            }
        }
        page.table(
            &[
                "condition",
                "corruption error",
                "Δ Dice [95% CI], Holm-adjusted Wilcoxon p",
            ],
            &rows,
        );
        page.note("* Holm-adjusted p < 0.05 over every level of every perturbation.");
    }
    page.heading("Protocol");
    page.note(&summary.protocol);
    for (model, steps) in &summary.inversion_steps {
        page.note(&format!(
            "{model}: SemanticGAN test-time inversion, {steps} steps per image."
        ));
    }
    Ok(page.finish())
}

//! `seg subgroups`' report: per attribute, each group's Dice distribution and mean
//! with its interval, the gaps between groups as a forest plot, and the groups'
//! make-up by the confounders.

use super::estimate;
use crate::error::Result;
use crate::subgroups::SubgroupSummary;
use radlens_eval::html::{fmt_ci, fmt_opt, Page};
use radlens_eval::plot::{self, Axes, ForestRow};

/// The report of `summary`.
pub fn subgroups_report(summary: &SubgroupSummary) -> Result<String> {
    let mut page = Page::new(&format!(
        "Subgroups: {} on {}",
        summary.model, summary.dataset
    ));
    page.paragraph(&format!("{} images.", summary.images));
    page.note(&format!("Confounders: {}", summary.confounders));

    let gaps: Vec<ForestRow> = summary
        .attributes
        .iter()
        .filter_map(|(name, a)| {
            Some(ForestRow {
                label: name.clone(),
                estimate: estimate(a.gap?, a.gap_ci),
            })
        })
        .collect();
    if !gaps.is_empty() {
        page.heading("Gaps between groups");
        let rows: Vec<Vec<String>> = summary
            .attributes
            .iter()
            .map(|(name, a)| {
                vec![
                    name.clone(),
                    a.worst_group.clone().unwrap_or_else(|| "-".into()),
                    a.gap.map_or("-".into(), |g| fmt_ci(g, a.gap_ci, 4)),
                    fmt_opt(a.p_value, 4),
                    fmt_opt(a.p_holm, 4),
                    fmt_opt(a.skewed_error_ratio, 2),
                ]
            })
            .collect();
        page.table(
            &[
                "attribute",
                "worst group",
                "gap in mean Dice [95% CI]",
                "permutation p",
                "Holm p",
                "skewed error ratio",
            ],
            &rows,
        );
        let forest = plot::forest(
            Axes {
                title: "Gap between best and worst group",
                x: "max - min of group mean Dice",
                y: "",
            },
            &gaps,
            0.0,
        )?;
        page.figures(&[(
            forest,
            "Groups with n < 20 are left out of the gap and the test.".into(),
        )]);
    }

    for (name, a) in &summary.attributes {
        page.heading(&format!("By {name}"));
        if a.missing > 0 {
            page.note(&format!("{} images do not record {name}.", a.missing));
        }
        let rows: Vec<Vec<String>> = a
            .groups
            .iter()
            .map(|g| {
                let confounders: Vec<String> = g
                    .confounders
                    .iter()
                    .map(|(c, counts)| {
                        let parts: Vec<String> =
                            counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
                        format!("{c}: {}", parts.join(", "))
                    })
                    .collect();
                vec![
                    g.group.clone(),
                    g.size_label(),
                    fmt_ci(g.dice_mean, Some(g.dice_ci), 4),
                    fmt_ci(g.hd95_mean.unwrap_or(f64::NAN), g.hd95_ci, 2),
                    fmt_ci(g.signed_area_error_mean, Some(g.signed_area_error_ci), 4),
                    confounders.join("; "),
                ]
            })
            .collect();
        page.table(
            &[
                "group",
                "n",
                "Dice [95% CI]",
                "HD95",
                "signed area error",
                "make-up",
            ],
            &rows,
        );
        let groups: Vec<(String, Vec<f64>)> = a
            .groups
            .iter()
            .map(|g| (g.group.clone(), g.dice_values.clone()))
            .collect();
        let means: Vec<ForestRow> = a
            .groups
            .iter()
            .map(|g| ForestRow {
                label: format!("{} (n {})", g.group, g.n),
                estimate: estimate(g.dice_mean, Some(g.dice_ci)),
            })
            .collect();
        let overall = {
            let all: Vec<f64> = a
                .groups
                .iter()
                .flat_map(|g| g.dice_values.clone())
                .collect();
            all.iter().sum::<f64>() / all.len().max(1) as f64
        };
        let axes = Axes {
            title: name,
            x: "group",
            y: "Dice per image",
        };
        page.figures(&[
            (
                plot::distributions(axes, &groups)?,
                format!("Each image's mean Dice over the structures, by {name}."),
            ),
            (
                plot::forest(
                    Axes {
                        title: name,
                        x: "mean Dice [95% CI]",
                        y: "",
                    },
                    &means,
                    overall,
                )?,
                "Group means with stratified bootstrap intervals; the line is the mean over all grouped images.".into(),
            ),
        ]);
    }
    page.heading("Protocol");
    page.note(&summary.protocol);
    if let Some(steps) = summary.inversion_steps {
        page.note(&format!(
            "SemanticGAN test-time inversion: {steps} steps per image."
        ));
    }
    Ok(page.finish())
}

//! `seg shift`'s report: per class, Dice on each domain, the drop, and the part of
//! it the labelling protocol explains.

use crate::error::Result;
use crate::shift::{ClassShift, ShiftSummary};
use radlens_eval::html::{fmt_ci, Page};
use radlens_eval::plot::{self, Axes, Estimate, ForestRow};

fn drop_row(label: String, d: &crate::shift::Drop) -> ForestRow {
    ForestRow {
        label,
        estimate: Estimate {
            value: d.drop,
            low: d.ci[0],
            high: d.ci[1],
        },
    }
}

/// The report of `summary`.
pub fn shift_report(summary: &ShiftSummary) -> Result<String> {
    let mut page = Page::new(&format!("Domain shift: {}", summary.model));
    page.paragraph(&format!(
        "In domain: {}. Out of domain: {}.",
        summary.in_domain, summary.out_of_domain
    ));
    let fmt = |c: &ClassShift| -> Vec<String> {
        let mut row = vec![
            c.class.clone(),
            fmt_ci(c.in_domain.mean, Some(c.in_domain.ci), 4),
            fmt_ci(c.out_of_domain.mean, Some(c.out_of_domain.ci), 4),
            fmt_ci(c.drop.drop, Some(c.drop.ci), 4),
            format!("{:.4}", c.drop.p_value),
        ];
        match &c.protocol_matched {
            Some(m) => row.extend([
                fmt_ci(m.out_of_domain.mean, Some(m.out_of_domain.ci), 4),
                fmt_ci(m.drop.drop, Some(m.drop.ci), 4),
                format!("{:.0}%", 100.0 * m.explained_share),
            ]),
            None => row.extend(["-".to_string(), "-".to_string(), "-".to_string()]),
        }
        row
    };
    let rows: Vec<Vec<String>> = summary.classes.iter().map(fmt).collect();
    page.table(
        &[
            "structure",
            "in-domain Dice",
            "out-of-domain Dice",
            "drop [95% CI]",
            "permutation p",
            "out-of-domain, retrocardiac excluded",
            "drop, retrocardiac excluded",
            "share explained by protocol",
        ],
        &rows,
    );
    let mut forest = Vec::new();
    for c in &summary.classes {
        forest.push(drop_row(c.class.clone(), &c.drop));
        if let Some(m) = &c.protocol_matched {
            forest.push(drop_row(format!("{} (matched)", c.class), &m.drop));
        }
    }
    page.figures(&[(
        plot::forest(
            Axes {
                title: "Dice drop, in-domain - out-of-domain",
                x: "drop in mean Dice [95% CI]",
                y: "",
            },
            &forest,
            0.0,
        )?,
        "\"matched\": the reference pixels the model labels heart left out of scoring on both domains.".into(),
    )]);
    page.heading("Protocol");
    page.note(&summary.protocol);
    Ok(page.finish())
}

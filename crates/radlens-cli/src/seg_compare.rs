//! `radlens seg compare`: parses `NAME=DIR` evaluations, runs [`radlens_seg::compare`],
//! writes `compare.json` and prints one table per class.

use anyhow::{bail, Result};
use clap::Args;
use radlens_seg::compare::{compare, read_per_image, CompareSummary, PairedMetric};
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// An evaluation as NAME=DIR (a `seg eval` output folder); give two or more, scored on
    /// the same dataset.
    #[arg(long = "eval", required = true)]
    evals: Vec<String>,
    /// The evaluation the others are compared with (default: the first).
    #[arg(long)]
    reference: Option<String>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for compare.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn compare_cmd(a: CompareArgs) -> Result<()> {
    let mut evaluations = Vec::new();
    for e in &a.evals {
        let Some((name, dir)) = e
            .split_once('=')
            .filter(|(n, d)| !n.is_empty() && !d.is_empty())
        else {
            bail!("--eval {e}: expected NAME=DIR");
        };
        evaluations.push((name.to_string(), read_per_image(&PathBuf::from(dir))?));
    }
    let reference = match &a.reference {
        Some(r) => r.clone(),
        None => evaluations[0].0.clone(),
    };
    let summary = compare(&evaluations, &reference, a.seed)?;
    std::fs::create_dir_all(&a.out)?;
    radlens_core::results::write_json(&a.out.join("compare.json"), &summary)?;
    print_tables(&summary);
    println!("wrote {}", a.out.join("compare.json").display());
    Ok(())
}

fn paired(m: Option<&PairedMetric>, digits: usize) -> String {
    match m {
        Some(m) => format!(
            "{:+.d$} [{:+.d$}, {:+.d$}] p {}",
            m.mean_difference,
            m.ci95[0],
            m.ci95[1],
            m.p_holm.map_or("-".into(), |p| format!("{p:.3}")),
            d = digits
        ),
        None => "-".into(),
    }
}

fn print_tables(s: &CompareSummary) {
    let classes: std::collections::BTreeSet<&String> =
        s.models.iter().flat_map(|m| m.classes.keys()).collect();
    for class in classes {
        println!("{class}  (vs {}; p Holm-adjusted Wilcoxon)", s.reference);
        for m in &s.models {
            let Some(c) = m.classes.get(class) else {
                continue;
            };
            let vs = s
                .comparisons
                .iter()
                .find(|v| v.model == m.model)
                .and_then(|v| v.classes.iter().find(|p| &p.class == class));
            let hd = c.hd95.as_ref().map_or("-".into(), |h| {
                format!("{:.1} [{:.1}, {:.1}]", h.mean, h.ci95_low, h.ci95_high)
            });
            println!(
                "  {:<14} n {:>3}  Dice {:.4} [{:.4}, {:.4}]  HD95 {hd}  dDice {}  dHD95 {}",
                m.model,
                c.dice.n,
                c.dice.mean,
                c.dice.ci95_low,
                c.dice.ci95_high,
                paired(vs.map(|v| &v.dice), 4),
                paired(vs.and_then(|v| v.hd95.as_ref()), 1),
            );
        }
    }
}

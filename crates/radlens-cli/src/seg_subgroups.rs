//! `radlens seg subgroups`: parses, evaluates, runs [`radlens_seg::subgroups`], prints.

use crate::seg_cmd::{load_scored_predictor, ScoredCases};
use crate::seg_progress::EvalProgress;
use anyhow::Result;
use clap::Args;
use radlens_seg::evaluate::{evaluate, write_per_image};
use radlens_seg::subgroups::{analyse, confounders, SubgroupSummary, PROTOCOL};
use std::path::PathBuf;

#[derive(Args)]
pub struct SubgroupsArgs {
    #[command(flatten)]
    scored: ScoredCases,
    /// Attributes to group by, comma-separated: any the dataset records (sex, view,
    /// nodule, finding, ...) and age_band.
    #[arg(long, value_delimiter = ',', default_value = "sex,age_band")]
    by: Vec<String>,
    /// Seed of the bootstrap and permutations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for per_image.csv, summary.json and report.html.
    #[arg(long)]
    out: PathBuf,
}

pub fn subgroups_cmd(a: SubgroupsArgs) -> Result<()> {
    let (dir, predictor) = load_scored_predictor(a.scored.model.clone(), &a.scored.inversion)?;
    let dataset = a.scored.dataset.open()?;
    let cases = a.scored.cases(&dir, &dataset)?;
    let known: Vec<&str> =
        a.by.iter()
            .filter(|name| {
                name.as_str() == radlens_io::attributes::AGE_BAND
                    || cases
                        .samples
                        .iter()
                        .any(|c| c.attributes.get(name).is_some())
            })
            .map(String::as_str)
            .collect();
    if let Some(unknown) = a.by.iter().find(|n| !known.contains(&n.as_str())) {
        anyhow::bail!(
            "--by {unknown}: no case of {} records that attribute",
            a.scored.dataset
        );
    }
    // Subgroups compare the mean prediction: no samples are drawn.
    let ev = evaluate(
        &predictor,
        &dataset,
        &cases.samples,
        0,
        0.0,
        &EvalProgress::default(),
    )?;
    let (conf, statement) = confounders(a.scored.dataset.kind);
    let attributes = analyse(&ev, &cases.samples, &a.by, &conf, a.seed);
    let summary = SubgroupSummary {
        model: dir.display().to_string(),
        dataset: a.scored.dataset.to_string(),
        images: cases.samples.len(),
        attributes,
        confounders: statement.to_string(),
        inversion_steps: predictor.model.inversion_steps(),
        protocol: PROTOCOL.to_string(),
    };
    write_per_image(&a.out, &ev)?;
    radlens_core::results::write_json(&a.out.join("summary.json"), &summary)?;
    radlens_seg::html::write_report(&a.out, &radlens_seg::html::subgroups_report(&summary)?)?;
    for (name, at) in &summary.attributes {
        println!("{name} ({} images without it)", at.missing);
        for g in &at.groups {
            println!(
                "  {:<12} n {:>3}  Dice {:.4} [{:.4}, {:.4}]  signed area error {:+.4}",
                g.group,
                g.size_label(),
                g.dice_mean,
                g.dice_ci[0],
                g.dice_ci[1],
                g.signed_area_error_mean
            );
        }
        if let (Some(gap), Some(ci), Some(p), Some(ph)) = (at.gap, at.gap_ci, at.p_value, at.p_holm)
        {
            println!(
                "  gap {gap:.4} [{:.4}, {:.4}]  permutation p {p:.4}  Holm {ph:.4}  skewed error ratio {:.2}",
                ci[0],
                ci[1],
                at.skewed_error_ratio.unwrap_or(f64::NAN)
            );
        }
    }
    println!("confounders: {}", summary.confounders);
    println!("wrote {}", a.out.display());
    Ok(())
}

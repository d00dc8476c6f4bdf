//! `radlens seg shift`: parses, runs [`radlens_seg::shift`] on both datasets, writes
//! and prints.

use crate::seg_cmd::{load_scored_predictor, InversionSteps};
use crate::seg_progress::EvalProgress;
use anyhow::Result;
use clap::Args;
use radlens_io::split::SplitPart;
use radlens_io::DatasetSpec;
use radlens_seg::checkpoint::SegRun;
use radlens_seg::evaluate::choose_cases;
use radlens_seg::shift::{compare_domains, score_domain, ShiftSummary, PROTOCOL};
use std::path::PathBuf;

#[derive(Args)]
pub struct ShiftArgs {
    /// Run folder of a trained model (default: the shipped models/jsrt-ssn).
    #[arg(long)]
    model: Option<PathBuf>,
    /// In-domain data as <kind>:<dir> (its test split when the model was trained on it).
    #[arg(long = "in-domain")]
    in_domain: DatasetSpec,
    /// Out-of-domain data as <kind>:<dir> (all of it unless --out-split is given).
    #[arg(long = "out-of-domain")]
    out_of_domain: DatasetSpec,
    /// Which in-domain cases (default: test on the model's own data).
    #[arg(long)]
    split: Option<SplitPart>,
    #[command(flatten)]
    inversion: InversionSteps,
    /// Seed of the bootstrap and permutations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for summary.json and report.html.
    #[arg(long)]
    out: PathBuf,
}

pub fn shift_cmd(a: ShiftArgs) -> Result<()> {
    let (dir, predictor) = load_scored_predictor(a.model, &a.inversion)?;
    let run = SegRun::at(&dir);
    let mut scores = Vec::new();
    for (spec, split) in [(&a.in_domain, a.split), (&a.out_of_domain, None)] {
        let dataset = spec.open()?;
        let cases = choose_cases(&run, spec, &dataset, split, None)?;
        println!("{spec}: {} cases ({:?})", cases.samples.len(), cases.part);
        scores.push(score_domain(
            &predictor,
            &dataset,
            &cases.samples,
            &EvalProgress::default(),
        )?);
    }
    let summary = ShiftSummary {
        model: dir.display().to_string(),
        in_domain: a.in_domain.to_string(),
        out_of_domain: a.out_of_domain.to_string(),
        classes: compare_domains(&scores[0], &scores[1], a.seed)?,
        protocol: PROTOCOL.to_string(),
    };
    radlens_core::results::write_json(&a.out.join("summary.json"), &summary)?;
    radlens_seg::html::write_report(&a.out, &radlens_seg::html::shift_report(&summary)?)?;
    for c in &summary.classes {
        print!(
            "{:<11} Dice {:.4} -> {:.4}  drop {:+.4} [{:+.4}, {:+.4}] p {:.4}",
            c.class,
            c.in_domain.mean,
            c.out_of_domain.mean,
            c.drop.drop,
            c.drop.ci[0],
            c.drop.ci[1],
            c.drop.p_value
        );
        match &c.protocol_matched {
            Some(m) => println!(
                "; retrocardiac excluded {:.4} -> {:.4}, drop {:+.4} [{:+.4}, {:+.4}] ({:.0}% explained)",
                m.in_domain.mean,
                m.out_of_domain.mean,
                m.drop.drop,
                m.drop.ci[0],
                m.drop.ci[1],
                100.0 * m.explained_share
            ),
            None => println!(),
        }
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

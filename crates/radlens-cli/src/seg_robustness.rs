//! `radlens seg robustness`: parses, runs [`radlens_seg::robustness`], writes and prints.

use crate::seg_cmd::{load_predictor, temperature, ScoredCases};
use crate::seg_progress::EvalProgress;
use anyhow::Result;
use clap::Args;
use radlens_core::results::write_csv;
use radlens_io::perturb::Perturbation;
use radlens_seg::case_results::CaseResults;
use radlens_seg::robustness::{run_robustness, summarise, ModelUnderTest, RobustnessRow};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct RobustnessArgs {
    /// The model under test (default: the shipped models/jsrt-ssn) and its cases.
    #[command(flatten)]
    scored: ScoredCases,
    /// A second model to compare with on the same perturbed films (paired tests,
    /// corruption error relative to it).
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Perturbations to apply, comma-separated (default: all twelve).
    #[arg(long, value_delimiter = ',', value_parser = parse_perturbation)]
    perturbations: Option<Vec<Perturbation>>,
    /// SSN samples per image for ECE and diversity.
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// SSN temperature (default: each model's calibrated temperature).
    #[arg(long)]
    temperature: Option<f64>,
    /// Seed of the perturbations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for per_image.csv, summary.json and report.html; per-case results
    /// are kept in its `cases/` folder while the run goes.
    #[arg(long)]
    out: PathBuf,
    /// Reuse the per-case results an interrupted run with the same settings left in
    /// `OUT/cases/` (the model folders must be unchanged); without it they are cleared.
    #[arg(long)]
    resume: bool,
}

/// Everything besides the weights that changes a case's rows.
#[derive(Serialize)]
struct Settings<'a> {
    radlens: &'static str,
    dataset: String,
    /// Name, SSN samples, temperature and SemanticGAN inversion steps of each model.
    models: Vec<(&'a str, usize, f64, Option<usize>)>,
    perturbations: Vec<&'static str>,
    seed: u64,
}

fn parse_perturbation(s: &str) -> Result<Perturbation, String> {
    Perturbation::ALL
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Perturbation::ALL.iter().map(|p| p.name()).collect();
            format!(
                "unknown perturbation '{s}' (expected one of {})",
                names.join(", ")
            )
        })
}

/// The name a model goes by in results: its folder's name.
fn model_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

pub fn robustness_cmd(a: RobustnessArgs) -> Result<()> {
    let (dir, predictor) = load_predictor(a.scored.model.clone())?;
    let mut models = vec![(model_name(&dir), predictor)];
    if let Some(other) = a.compare {
        let (odir, op) = load_predictor(Some(other))?;
        anyhow::ensure!(
            model_name(&odir) != models[0].0,
            "--model and --compare have the same folder name {}",
            models[0].0
        );
        models.push((model_name(&odir), op));
    }
    a.scored
        .inversion
        .apply(&mut models.iter_mut().map(|(_, p)| p).collect::<Vec<_>>())?;
    let under_test = models
        .iter()
        .map(|(name, p)| {
            Ok(ModelUnderTest {
                name: name.clone(),
                predictor: p,
                samples: a.samples,
                temperature: temperature(a.temperature, p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dataset = a.scored.dataset.open()?;
    let cases = a.scored.cases(&dir, &dataset)?;
    let perturbations = a
        .perturbations
        .unwrap_or_else(|| Perturbation::ALL.to_vec());
    let settings = Settings {
        radlens: env!("CARGO_PKG_VERSION"),
        dataset: a.scored.dataset.to_string(),
        models: under_test
            .iter()
            .map(|m| {
                let steps = m.predictor.model.inversion_steps();
                (m.name.as_str(), m.samples, m.temperature, steps)
            })
            .collect(),
        perturbations: perturbations.iter().map(|p| p.name()).collect(),
        seed: a.seed,
    };
    let saved = CaseResults::new(a.out.join("cases"), &settings)?;
    if !a.resume {
        saved.clear()?;
    }
    let rows = run_robustness(
        &under_test,
        &dataset,
        &cases.samples,
        &perturbations,
        a.seed,
        Some(&saved),
        &EvalProgress::default(),
    )?;
    let names: Vec<String> = models.iter().map(|(n, _)| n.clone()).collect();
    let mut summary = summarise(
        &rows,
        &names,
        &perturbations,
        a.scored.dataset.to_string(),
        a.seed,
    );
    summary.inversion_steps = models
        .iter()
        .filter_map(|(name, p)| Some((name.clone(), p.model.inversion_steps()?)))
        .collect();
    write_csv(
        &a.out.join("per_image.csv"),
        &HEADER,
        rows.iter().map(csv_row),
    )?;
    radlens_core::results::write_json(&a.out.join("summary.json"), &summary)?;
    radlens_seg::html::write_report(&a.out, &radlens_seg::html::robustness_report(&summary)?)?;
    for (name, m) in &summary.models {
        println!("{name}: clean Dice {:.4}", m.clean.dice_mean);
        for (p, levels) in &m.perturbations {
            let dice: Vec<String> = levels
                .iter()
                .map(|l| format!("{:.4}", l.dice_mean))
                .collect();
            println!("  {p:<15} Dice by level {}", dice.join(" "));
        }
    }
    if let Some(c) = &summary.comparison {
        println!(
            "{} vs {}: mean corruption error {:.3}",
            c.model, c.reference, c.mean_corruption_error
        );
        for (p, levels) in &c.perturbations {
            let sig: Vec<String> = levels
                .iter()
                .map(|l| {
                    let star = if l.p_holm.is_some_and(|p| p < 0.05) {
                        "*"
                    } else {
                        ""
                    };
                    format!("{:+.4}{star}", l.delta_dice_mean)
                })
                .collect();
            println!(
                "  {p:<15} CE {:.3}  delta Dice by level {}",
                c.corruption_error[p],
                sig.join(" ")
            );
        }
        println!("  (* Holm-adjusted Wilcoxon p < 0.05)");
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

const HEADER: [&str; 9] = [
    "model",
    "id",
    "perturbation",
    "level",
    "param",
    "dice",
    "hd95",
    "ece",
    "sample_diversity",
];

fn csv_row(r: &RobustnessRow) -> [String; 9] {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    [
        r.model.clone(),
        r.id.clone(),
        r.perturbation.clone(),
        r.level.to_string(),
        r.param.to_string(),
        format!("{:.6}", r.dice),
        opt(r.hd95),
        opt(r.ece),
        opt(r.sample_diversity),
    ]
}

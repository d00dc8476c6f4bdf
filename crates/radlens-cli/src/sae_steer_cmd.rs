//! `radlens sae steer` and `radlens sae steer-sweep` (radlens-interp's `steer_sweep`).

use anyhow::{bail, Context, Result};
use clap::Args;
use radlens_core::results::write_json;
use radlens_interp::decoder_logits::features_promoting;
use radlens_interp::harvest::HarvestConfig;
use radlens_interp::inputs::{example_reports, load_model, select_reports};
use radlens_interp::steer::HookedSae;
use radlens_interp::steer_sweep::{steer_pairs, steer_sweep, Judge, SweepConfig, SweepProgress};
use radlens_lm::openai::{Steer, SteerMode};
use radlens_lm::{GenerationConfig, LanguageModel};
use radlens_report::{Labeler, Observation, ReportPart};
use radlens_sae::run::TrainReport;
use std::path::{Path, PathBuf};

const DEFAULT_MODEL: &str = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// An SAE and the model it reads (shared by `steer`, `steer-sweep` and `promoting`).
#[derive(Args)]
pub struct SaeModelArgs {
    /// SAE directory (with train.json, or give --layer).
    #[arg(long = "sae")]
    dir: PathBuf,
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Layer the SAE reads, for an SAE without train.json.
    #[arg(long)]
    layer: Option<usize>,
}

impl SaeModelArgs {
    fn load(&self) -> Result<(LanguageModel, HookedSae)> {
        let lm = load_model(&self.model)?;
        let sae = HookedSae::load(&self.dir, &self.model, self.layer)?;
        Ok((lm, sae))
    }
}

/// The feature to steer, and how.
#[derive(Args)]
pub struct FeatureArgs {
    #[command(flatten)]
    sae: SaeModelArgs,
    #[arg(long)]
    feature: usize,
    #[arg(long, value_enum, default_value = "add")]
    mode: ModeArg,
}

/// How each reply is generated; both runs of a prompt use the same seed.
#[derive(Args)]
pub struct GenerationArgs {
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Show the model N example reports first, as earlier answers to a request for a chest
    /// X-ray report (few-shot): the first N training reports of the corpus the SAE's store
    /// was harvested from (as `sae harvest --shots N`).
    #[arg(long, default_value_t = 0)]
    shots: usize,
}

impl GenerationArgs {
    fn config(&self) -> GenerationConfig {
        GenerationConfig {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            ..GenerationConfig::default()
        }
    }
}

#[derive(Args)]
pub struct SteerArgs {
    #[command(flatten)]
    steer: FeatureArgs,
    /// Steering coefficient, in the SAE's activation units.
    #[arg(long)]
    coef: f64,
    /// Prompts (user turns); repeat the flag, or use --prompts-file.
    #[arg(long)]
    prompt: Vec<String>,
    /// One prompt per line.
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    #[command(flatten)]
    generation: GenerationArgs,
    /// Also write the pairs as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Add,
    Clamp,
}

impl From<ModeArg> for SteerMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Add => SteerMode::Add,
            ModeArg::Clamp => SteerMode::Clamp,
        }
    }
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    steer: FeatureArgs,
    /// Coefficients, comma-separated (0, the baseline, is always run).
    #[arg(long, value_delimiter = ',', required = true)]
    coefs: Vec<f64>,
    /// One prompt per line.
    #[arg(long)]
    prompts_file: PathBuf,
    /// Judge mentions with the labeller for this observation (e.g. "Pleural Effusion").
    #[arg(long, conflicts_with = "keywords")]
    finding: Option<String>,
    /// Judge mentions by these keywords, comma-separated.
    #[arg(long, value_delimiter = ',')]
    keywords: Vec<String>,
    /// Held-out reports for perplexity: this many from the held-out part of the corpus
    /// the SAE's store was harvested from.
    #[arg(long, default_value_t = 50)]
    heldout_reports: usize,
    #[arg(long, default_value_t = 1.2)]
    max_perplexity_ratio: f64,
    #[command(flatten)]
    generation: GenerationArgs,
    /// Output directory (summary.json).
    #[arg(long)]
    out: PathBuf,
}

fn read_prompts(given: Vec<String>, file: Option<&Path>) -> Result<Vec<String>> {
    let mut prompts = given;
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read prompts from {}", f.display()))?;
        prompts.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from),
        );
    }
    if prompts.is_empty() {
        bail!("no prompts: give --prompt or --prompts-file");
    }
    Ok(prompts)
}

/// The SAE's `train.json`, which names the store (and so the corpus) it was trained on.
fn training_report(sae: &Path) -> Result<TrainReport> {
    radlens_core::results::read_json(&sae.join(radlens_sae::run::REPORT)).with_context(|| {
        format!(
            "{}: the SAE's train.json says which corpus its store was harvested from",
            sae.display()
        )
    })
}

pub fn steer(a: SteerArgs) -> Result<()> {
    let prompts = read_prompts(a.prompt, a.prompts_file.as_deref())?;
    let (lm, sae) = a.steer.sae.load()?;
    let steer = Steer {
        feature: a.steer.feature,
        coef: a.coef,
        mode: a.steer.mode.into(),
    };
    let cfg = a.generation.config();
    let examples = match a.generation.shots {
        0 => Vec::new(),
        n => {
            let harvest = HarvestConfig::from_meta(&training_report(&a.steer.sae.dir)?.store)?;
            example_reports(&harvest.corpus.parse()?, harvest.split, n)?
        }
    };
    let pairs = steer_pairs(
        &lm,
        &sae,
        &steer,
        &examples,
        &prompts,
        &cfg,
        &|_: &usize| {},
    )?;
    for p in &pairs {
        println!("## {}", p.prompt);
        println!(
            "baseline (feature {} mean activation {:.3}):\n{}\n",
            a.steer.feature, p.baseline_activation, p.baseline
        );
        println!(
            "steered, coef {} (mean activation {:.3}):\n{}\n",
            a.coef, p.steered_activation, p.steered
        );
    }
    if let Some(out) = a.out {
        write_json(&out, &pairs)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

pub fn sweep(a: SweepArgs) -> Result<()> {
    let prompts = read_prompts(Vec::new(), Some(&a.prompts_file))?;
    let judge = match (&a.finding, a.keywords.is_empty()) {
        (Some(f), _) => {
            let o = Observation::parse(f).with_context(|| format!("unknown finding '{f}'"))?;
            Judge::Labeler(Box::new(Labeler::builtin()?), o)
        }
        (None, false) => Judge::Keywords(a.keywords.clone()),
        (None, true) => bail!("give --finding or --keywords"),
    };
    let harvest = HarvestConfig::from_meta(&training_report(&a.steer.sae.dir)?.store)?;
    let corpus = harvest.corpus.parse()?;
    let heldout = select_reports(
        &corpus,
        harvest.split,
        ReportPart::Heldout,
        Some(a.heldout_reports),
    )?
    .iter()
    .map(|r| r.text())
    .collect();
    let (lm, sae) = a.steer.sae.load()?;
    let windower = harvest.windower(&lm, &corpus)?;
    let cfg = SweepConfig {
        feature: a.steer.feature,
        mode: a.steer.mode.into(),
        coefs: a.coefs,
        examples: example_reports(&corpus, harvest.split, a.generation.shots)?,
        prompts,
        judge,
        generation: a.generation.config(),
        heldout,
        windower,
        max_perplexity_ratio: a.max_perplexity_ratio,
    };
    let summary = steer_sweep(&lm, &sae, &cfg, &|p: &SweepProgress| {
        eprintln!("coefficient {}/{} done", p.done, p.total)
    })?;
    println!("coef      rate   activation  perplexity  ratio");
    for p in &summary.points {
        println!(
            "{:>7.2}  {:>5.2}  {:>10.3}  {:>10.3}  {:.3}",
            p.coef, p.rate, p.activation, p.perplexity, p.perplexity_ratio
        );
    }
    std::fs::create_dir_all(&a.out)?;
    write_json(&a.out.join("summary.json"), &summary)?;
    eprintln!("wrote {}", a.out.join("summary.json").display());
    Ok(())
}

#[derive(Args)]
pub struct PromotingArgs {
    #[command(flatten)]
    sae: SaeModelArgs,
    /// Words the features should make the model write, comma-separated; each counts by its
    /// first token, spelled with a leading space as inside a sentence (see --no-space).
    #[arg(long, value_delimiter = ',')]
    words: Vec<String>,
    /// Take the words as written, without a leading space.
    #[arg(long)]
    no_space: bool,
    #[arg(long, default_value_t = 20)]
    top: usize,
}

/// `radlens sae promoting`: the features whose decoder directions raise the words' logits
/// most (candidates for steering).
pub fn promoting(a: PromotingArgs) -> Result<()> {
    let (lm, sae) = a.sae.load()?;
    let mut tokens = Vec::new();
    for word in a.words.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        let text = if a.no_space {
            word.to_string()
        } else {
            format!(" {word}")
        };
        let ids = lm.tokenizer.encode_text(&text)?;
        let Some(&first) = ids.first() else {
            bail!("--words: '{word}' has no tokens");
        };
        println!(
            "{text:?}: token {first} ({:?}) of {}",
            lm.tokenizer.decode(&[first], false)?,
            ids.len()
        );
        tokens.push(first);
    }
    if tokens.is_empty() {
        bail!("--words: give at least one word");
    }
    let features = features_promoting(&lm, &sae, &tokens, a.top)?;
    println!("feature  mean logit");
    for f in features {
        println!("{:>7}  {:.3}", f.feature, f.logit);
    }
    Ok(())
}

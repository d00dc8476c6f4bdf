//! `radlens sae ...`: harvest language-model activations from report text, train sparse
//! autoencoders on them, evaluate them (FVU, sparsity, LM loss with the SAE spliced in)
//! and build feature databases.

use crate::progress::{bar, LazyBar};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use radlens_core::observe::Count;
use radlens_interp::concepts::{
    probe_concepts, ConceptConfig, ConceptRequest, REPORT as CONCEPTS_REPORT,
};
use radlens_interp::eval::{evaluate_sae, EvalEvent, EvalRequest, SpliceRequest, REPORT};
use radlens_interp::features::{build_feature_db, FeatureConfig};
use radlens_interp::harvest::{harvest, HarvestConfig, HarvestProgress};
use radlens_interp::inputs::{load_model, model_name, select_reports};
use radlens_interp::window::{Template, WindowSpec};
use radlens_report::{CorpusSpec, ReportPart, ReportSplit};
use radlens_sae::formats::load_sae;
use radlens_sae::report::report_text;
use radlens_sae::run::{train_run, SaeSpec, TrainEvent, TrainRequest};
use radlens_sae::tokens::TokenPolicy;
use radlens_sae::{
    Activation, ActivationStore, AdamConfig, ComputePath, LinearDecay, Sae, TrainConfig,
    DEFAULT_GROUP_FRACTIONS,
};
use std::path::PathBuf;
use std::time::Instant;

const DEFAULT_MODEL: &str = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Subcommand)]
pub enum SaeCommand {
    /// Store a layer's residual-stream activations over report text (resumable).
    Harvest(HarvestArgs),
    /// Train a sparse autoencoder on an activation store (resumable).
    Train(TrainArgs),
    /// Evaluate an SAE: FVU, L0, dead/dense latents and, with --model, the LM loss with the
    /// SAE spliced in; writes metrics.json.
    Eval(EvalArgs),
    /// Build the SQLite feature database: statistics and examples of every latent.
    Features(FeaturesArgs),
    /// Clinical concept probes: per finding (IU X-ray tags), the feature whose report-level
    /// maximum separates reports with and without it best (ranked on training reports,
    /// AUROC with a bootstrap CI on held-out ones); writes concepts.json.
    Concepts(ConceptsArgs),
    /// Generate with and without steering on one feature (same seed), side by side, with
    /// the feature's activation on the generated tokens.
    Steer(crate::sae_steer_cmd::SteerArgs),
    /// Steer over a range of coefficients: mention rate of a finding over the prompts and
    /// held-out perplexity at each; writes summary.json.
    SteerSweep(crate::sae_steer_cmd::SweepArgs),
    /// The features whose decoder directions make the model write given words (their
    /// logits through the unembedding), highest first: candidates for steering.
    Promoting(crate::sae_steer_cmd::PromotingArgs),
    /// Explain latents from their feature-database examples (contrastive n-grams, an
    /// OpenAI-compatible endpoint or a local GGUF); resumable, stored in the database.
    Explain(crate::sae_autointerp_cmd::ExplainArgs),
    /// Score explanations: embedding AUROC (all-MiniLM-L6-v2), detection and fuzzing by an
    /// LLM judge; stored in the database, summary in scores.json.
    Score(crate::sae_autointerp_cmd::ScoreArgs),
}

pub fn run(cmd: SaeCommand) -> Result<()> {
    match cmd {
        SaeCommand::Harvest(a) => harvest_cmd(a),
        SaeCommand::Train(a) => train_cmd(a),
        SaeCommand::Eval(a) => eval_cmd(a),
        SaeCommand::Features(a) => features_cmd(a),
        SaeCommand::Concepts(a) => concepts_cmd(a),
        SaeCommand::Steer(a) => crate::sae_steer_cmd::steer(a),
        SaeCommand::SteerSweep(a) => crate::sae_steer_cmd::sweep(a),
        SaeCommand::Promoting(a) => crate::sae_steer_cmd::promoting(a),
        SaeCommand::Explain(a) => crate::sae_autointerp_cmd::explain_cmd(a),
        SaeCommand::Score(a) => crate::sae_autointerp_cmd::score_cmd(a),
    }
}

/// The number of worker threads: the given one, else the available cores.
fn workers(given: Option<usize>) -> usize {
    given.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[derive(Args)]
pub struct HarvestArgs {
    /// LLaMA-family GGUF model.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Block whose output (resid_post) is stored, from 0.
    #[arg(long, default_value_t = 15)]
    layer: usize,
    /// Report corpus, e.g. iu-xray:../shared/data/iu-xray.
    #[arg(long)]
    corpus: CorpusSpec,
    /// Which reports: train, heldout or all.
    #[arg(long, default_value = "train")]
    part: ReportPart,
    /// Fraction of distinct report texts held out (seeded).
    #[arg(long, default_value_t = 0.1)]
    heldout_fraction: f64,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Keep word-for-word duplicate reports (after lower-casing and white-space folding)
    /// and split by report, as stores harvested before de-duplication did.
    #[arg(long)]
    keep_duplicates: bool,
    /// raw (<|endoftext|>, or BOS if the vocabulary lacks it, + text), chat (the text as the user turn of the chat template) or reply (the text as the assistant's answer to a request for a chest X-ray report).
    #[arg(long, default_value = "raw")]
    template: Template,
    /// Report tokens per context window (longer reports are cut into several).
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// With --template reply: earlier request/reply exchanges before each report, answered
    /// by the first N training reports (few-shot), so the model has read the corpus'
    /// register first.
    #[arg(long, default_value_t = 0)]
    shots: usize,
    /// Rows per shard file.
    #[arg(long, default_value_t = 32_768)]
    shard_tokens: usize,
    /// Only the first N reports of the part.
    #[arg(long)]
    max_reports: Option<usize>,
    /// Worker threads sharing the model (default: the available cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Output store directory (an unfinished one with the same settings is resumed).
    #[arg(long)]
    out: PathBuf,
}

fn harvest_cmd(a: HarvestArgs) -> Result<()> {
    let split = ReportSplit {
        heldout_fraction: a.heldout_fraction,
        seed: a.split_seed,
        deduplicate: !a.keep_duplicates,
    };
    let reports = select_reports(&a.corpus, split, a.part, a.max_reports)?;
    let lm = load_model(&a.model)?;
    let cfg = HarvestConfig {
        corpus: a.corpus.to_string(),
        part: a.part,
        split,
        layer: a.layer,
        window: WindowSpec {
            template: a.template,
            context_tokens: a.context,
            shots: a.shots,
        },
        shard_tokens: a.shard_tokens,
        max_reports: a.max_reports,
    };
    let pb = bar(
        reports.len() as u64,
        "harvest {bar:30} {pos}/{len} reports {msg} [{elapsed_precise}<{eta_precise}]",
    );
    let start = Instant::now();
    let summary = harvest(
        &lm,
        &model_name(&a.model),
        &reports,
        &cfg,
        &a.out,
        workers(a.workers),
        &|p: &HarvestProgress| {
            pb.set_position(p.reports_done as u64);
            let rate = p.tokens_done as f64 / start.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!("{} tokens, {rate:.0} tokens/s", p.tokens_done));
        },
    )?;
    pb.finish();
    eprintln!(
        "{}: {} tokens from {} reports in {} shards{}",
        a.out.display(),
        summary.tokens,
        summary.reports,
        summary.shards,
        if summary.resumed_after_reports > 0 {
            format!(" (resumed after {} reports)", summary.resumed_after_reports)
        } else {
            String::new()
        }
    );
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Arch {
    MatryoshkaBatchtopk,
    Batchtopk,
    Topk,
    Relu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PathArg {
    Sparse,
    Dense,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Activation store (from `radlens sae harvest`).
    #[arg(long)]
    activations: PathBuf,
    #[arg(long, value_enum, default_value = "matryoshka-batchtopk")]
    arch: Arch,
    /// Dictionary size as a multiple of the activation width.
    #[arg(long, default_value_t = 8)]
    expansion: usize,
    /// Active latents per token (BatchTopK: on average over the batch).
    #[arg(long, default_value_t = 32)]
    k: usize,
    /// L1 coefficient of the ReLU SAE.
    #[arg(long, default_value_t = 5.0)]
    l1_coefficient: f32,
    /// Matryoshka group fractions (the remainder goes to the last group).
    #[arg(long, value_delimiter = ',')]
    group_fractions: Option<Vec<f64>>,
    #[command(flatten)]
    tokens: TokenPolicyArgs,
    /// Tokens per step.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Training steps.
    #[arg(long, default_value_t = 4000)]
    steps: u64,
    /// Peak learning rate (default 2e-4 / sqrt(dict / 2^14)).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 1000)]
    warmup_steps: u64,
    /// Fraction of the steps at the end over which the learning rate decays to zero.
    #[arg(long, default_value_t = 0.2)]
    decay_fraction: f64,
    /// A latent that has not fired for this many tokens is dead (AuxK revives it).
    #[arg(long, default_value_t = 10_000_000)]
    dead_after_tokens: u64,
    /// First step whose batch updates the BatchTopK inference threshold (an EMA).
    #[arg(long, default_value_t = 1000)]
    threshold_start_step: u64,
    /// Rows loaded and shuffled at a time.
    #[arg(long, default_value_t = 1 << 18)]
    buffer_rows: usize,
    /// Seed of the initialisation and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u64,
    /// Steps between rows of history.csv.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Sparse kernels (default) or dense matmuls.
    #[arg(long, value_enum, default_value = "sparse")]
    compute: PathArg,
    /// Continue from <out>/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// Output directory: SAELens files, checkpoint, history.csv, train.json.
    #[arg(long)]
    out: PathBuf,
}

/// Which tokens an SAE is trained on; evaluation and splicing use the same, saved with it.
#[derive(Args)]
pub struct TokenPolicyArgs {
    /// Exclude tokens at report positions below this (from 0; positions 0 and 1 hold the
    /// attention-sink tokens with massive norms).
    #[arg(long, default_value_t = TokenPolicy::default().min_position)]
    min_position: u32,
    /// Exclude tokens whose residual norm exceeds this multiple of the median (0: keep
    /// every norm).
    #[arg(long, default_value_t = TokenPolicy::default().max_norm_ratio.unwrap_or(0.0))]
    max_norm_ratio: f64,
}

impl TokenPolicyArgs {
    fn policy(&self) -> TokenPolicy {
        TokenPolicy {
            min_position: self.min_position,
            max_norm_ratio: (self.max_norm_ratio != 0.0).then_some(self.max_norm_ratio),
        }
    }
}

impl TrainArgs {
    fn sae_spec(&self) -> Result<SaeSpec> {
        let activation = match self.arch {
            Arch::MatryoshkaBatchtopk | Arch::Batchtopk => Activation::BatchTopK { k: self.k },
            Arch::Topk => Activation::TopK { k: self.k },
            Arch::Relu => Activation::Relu {
                l1_coefficient: self.l1_coefficient,
            },
        };
        let group_fractions = match (self.arch, &self.group_fractions) {
            (Arch::MatryoshkaBatchtopk, f) => Some(
                f.clone()
                    .unwrap_or_else(|| DEFAULT_GROUP_FRACTIONS.to_vec()),
            ),
            (_, Some(_)) => bail!("--group-fractions only applies to --arch matryoshka-batchtopk"),
            (_, None) => None,
        };
        Ok(SaeSpec {
            expansion: self.expansion,
            activation,
            group_fractions,
        })
    }

    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            adam: AdamConfig {
                lr: self.lr,
                warmup_steps: self.warmup_steps,
                decay: Some(LinearDecay::last_fraction(self.steps, self.decay_fraction)),
                ..AdamConfig::default()
            },
            dead_after_tokens: self.dead_after_tokens,
            threshold_start_step: self.threshold_start_step,
            path: match self.compute {
                PathArg::Sparse => ComputePath::Sparse,
                PathArg::Dense => ComputePath::Dense,
            },
            seed: self.seed,
            ..TrainConfig::default()
        }
    }

    fn request(&self) -> Result<TrainRequest> {
        Ok(TrainRequest {
            activations: self.activations.clone(),
            out: self.out.clone(),
            sae: self.sae_spec()?,
            train: self.train_config(),
            tokens: self.tokens.policy(),
            batch: self.batch,
            steps: self.steps,
            buffer_rows: self.buffer_rows,
            checkpoint_every: self.checkpoint_every,
            log_every: self.log_every,
            resume: self.resume,
        })
    }
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let pb =
        LazyBar::new("train {bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]");
    let show = |e: &TrainEvent| match e {
        TrainEvent::Started { steps_done } => pb.get(a.steps).set_position(*steps_done),
        TrainEvent::Step {
            stats,
            tokens_per_s,
        } => {
            let pb = pb.get(a.steps);
            pb.set_position(stats.step + 1);
            pb.set_message(format!(
                "loss {:.4} l0 {:.1} dead {:.1}% {tokens_per_s:.0} tokens/s",
                stats.loss,
                stats.l0,
                100.0 * stats.dead_fraction
            ));
        }
        TrainEvent::Checkpoint { steps_done } => {
            // A line per checkpoint, also when the bar is hidden (logs, pipes), formatted
            // before suspending the bar, which holds its lock meanwhile.
            let pb = pb.get(a.steps);
            let line = format!("step {steps_done}: {}", pb.message());
            pb.suspend(|| eprintln!("{line}"));
        }
    };
    let outcome = train_run(&a.request()?, &show)?;
    pb.finish();
    let counts = outcome.report.token_counts;
    eprintln!(
        "{}: SAE ({} latents) after {} steps, on {} of the store's {} tokens ({} excluded by \
         position, {} by norm)",
        a.out.display(),
        outcome.report.sae.d_sae,
        outcome.steps_done,
        counts.kept,
        counts.total(),
        counts.early_position,
        counts.large_norm
    );
    Ok(())
}

/// An SAE and the activation store it is applied to.
#[derive(Args)]
pub struct SaeInput {
    /// SAE directory (SAELens layout, or dictionary_learning's ae.pt + config.json).
    #[arg(long)]
    sae: PathBuf,
    /// Activation store (from `radlens sae harvest`).
    #[arg(long)]
    activations: PathBuf,
}

impl SaeInput {
    /// Loads both (the library checks that the SAE reads the store's width).
    fn open(&self) -> Result<(Sae, ActivationStore)> {
        Ok((
            load_sae(&self.sae)?,
            ActivationStore::open(&self.activations)?,
        ))
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// The SAE and the store to evaluate on (held-out reports).
    #[command(flatten)]
    input: SaeInput,
    /// GGUF model: also measure the LM loss with the SAE spliced in.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Corpus for the spliced LM loss (default: the store's).
    #[arg(long)]
    corpus: Option<CorpusSpec>,
    /// Stop the spliced LM loss after about this many scored tokens.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Worker threads sharing the model for the spliced loss (default: the available cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Output directory for metrics.json.
    #[arg(long)]
    out: PathBuf,
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let request = EvalRequest {
        sae: a.input.sae.clone(),
        activations: a.input.activations.clone(),
        language_model: a.model.as_ref().map(|model| SpliceRequest {
            model: model.clone(),
            corpus: a.corpus.clone(),
            max_tokens: a.max_tokens,
            workers: workers(a.workers),
        }),
        out: a.out.clone(),
    };
    let encode = LazyBar::new("eval {bar:30} {pos}/{len} tokens");
    let splice =
        LazyBar::new("splice {bar:30} {pos}/{len} reports {msg} [{elapsed_precise}<{eta_precise}]");
    let show = |e: &EvalEvent| match e {
        EvalEvent::Encoded(c) => {
            encode.get(c.total).set_position(c.done);
            if c.done == c.total {
                encode.finish();
            }
        }
        EvalEvent::OtherModel { store_model, model } => {
            eprintln!("warning: the store was harvested from {store_model}, not {model}")
        }
        EvalEvent::Spliced {
            progress,
            reports_total,
        } => {
            let pb = splice.get(*reports_total as u64);
            pb.set_position(progress.reports_done as u64);
            pb.set_message(format!("{} tokens", progress.tokens_scored));
        }
    };
    let report = evaluate_sae(&request, &show)?;
    splice.finish();
    println!("{}", report_text(&report)?);
    eprintln!("wrote {}", a.out.join(REPORT).display());
    Ok(())
}

#[derive(Args)]
pub struct FeaturesArgs {
    /// The SAE and a store with token metadata.
    #[command(flatten)]
    input: SaeInput,
    /// Top-activating examples per latent.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Activation quantile bins per latent.
    #[arg(long, default_value_t = 10)]
    quantiles: usize,
    /// Random examples per quantile bin.
    #[arg(long, default_value_t = 5)]
    per_quantile: usize,
    /// Neighbouring tokens on each side of an example.
    #[arg(long, default_value_t = 8)]
    context: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output SQLite file.
    #[arg(long)]
    out: PathBuf,
}

fn features_cmd(a: FeaturesArgs) -> Result<()> {
    let (sae, store) = a.input.open()?;
    let cfg = FeatureConfig {
        top_examples: a.top,
        quantiles: a.quantiles,
        per_quantile: a.per_quantile,
        context: a.context,
        seed: a.seed,
        ..FeatureConfig::default()
    };
    let provenance = [
        ("sae", a.input.sae.display().to_string()),
        ("activations", a.input.activations.display().to_string()),
        ("model", store.meta.model.clone()),
        ("layer", store.meta.layer.to_string()),
        ("hook", store.meta.hook.clone().unwrap_or_default()),
        ("radlens_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let pb = bar(
        store.shards().len() as u64,
        "features {bar:30} {pos}/{len} shards",
    );
    let summary = build_feature_db(&sae, &store, &cfg, &provenance, &a.out, &|c: &Count| {
        pb.set_position(c.done)
    })?;
    pb.finish();
    eprintln!(
        "{}: {} latents ({} fired) over {} tokens, {} examples",
        a.out.display(),
        summary.latents,
        summary.alive,
        summary.tokens,
        summary.examples
    );
    Ok(())
}

#[derive(Args)]
pub struct ConceptsArgs {
    /// SAE directory (trained by `radlens sae train`: its token filter is used).
    #[arg(long)]
    sae: PathBuf,
    /// Held-out activation store: the AUROCs and their intervals are measured here.
    #[arg(long)]
    activations: PathBuf,
    /// Training activation store: features are ranked here.
    #[arg(long)]
    train_activations: PathBuf,
    /// Corpus with the tags (default: the one the stores were harvested from).
    #[arg(long)]
    corpus: Option<CorpusSpec>,
    /// Feature database of this SAE to store the table in (table `concepts`).
    #[arg(long)]
    features_db: Option<PathBuf>,
    /// Features kept per finding.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rank only features that fire with the finding (by default a feature silent in the
    /// finding's reports counts too, e.g. one that fires on abnormalities for `normal`).
    #[arg(long)]
    fires_only: bool,
    /// Output directory for concepts.json.
    #[arg(long)]
    out: PathBuf,
}

fn concepts_cmd(a: ConceptsArgs) -> Result<()> {
    let request = ConceptRequest {
        sae: a.sae,
        train: a.train_activations,
        heldout: a.activations,
        corpus: a.corpus,
        feature_db: a.features_db,
        out: a.out.clone(),
    };
    let cfg = ConceptConfig {
        top_features: a.top,
        resamples: a.resamples,
        seed: a.seed,
        fires_only: a.fires_only,
    };
    let rows = probe_concepts(&request, &cfg)?;
    println!("finding                  n+   n-  feature  direction  AUROC [95% CI]");
    for r in &rows {
        println!(
            "{:<22} {:>4} {:>4} {:>8}  {:<9}  {:.3} [{:.3}, {:.3}]",
            r.finding,
            r.n_positive,
            r.n_negative,
            r.best_feature,
            r.direction.as_str(),
            r.auroc,
            r.ci_low,
            r.ci_high
        );
    }
    eprintln!("wrote {}", a.out.join(CONCEPTS_REPORT).display());
    Ok(())
}

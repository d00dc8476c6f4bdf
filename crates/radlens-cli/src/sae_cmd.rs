//! `radlens sae ...`: harvest language-model activations from report text, train sparse
//! autoencoders on them, evaluate them (FVU, sparsity, LM loss with the SAE spliced in)
//! and build feature databases.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use radlens_core::atomic::write_atomic;
use radlens_interp::features::{build_feature_db, FeatureConfig};
use radlens_interp::harvest::{harvest, HarvestConfig};
use radlens_interp::splice::{splice_metrics, SpliceConfig};
use radlens_interp::window::{Template, WindowSpec};
use radlens_lm::{LanguageModel, WeightFormat};
use radlens_report::{CorpusSpec, Report, ReportPart, ReportSplit};
use radlens_sae::formats::{load_dictionary_learning, load_saelens, save_saelens};
use radlens_sae::metrics::{evaluate, Metrics};
use radlens_sae::{
    group_sizes, Activation, ActivationStore, AdamConfig, ComputePath, LinearDecay, Sae, SaeConfig,
    StepStats, TrainConfig, Trainer, DEFAULT_GROUP_FRACTIONS,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
}

pub fn run(cmd: SaeCommand) -> Result<()> {
    match cmd {
        SaeCommand::Harvest(a) => harvest_cmd(a),
        SaeCommand::Train(a) => train_cmd(a),
        SaeCommand::Eval(a) => eval_cmd(a),
        SaeCommand::Features(a) => features_cmd(a),
    }
}

fn load_lm(path: &Path) -> Result<LanguageModel> {
    LanguageModel::load(path, &Device::Cpu, WeightFormat::F32)
        .with_context(|| format!("loading the language model {}", path.display()))
}

/// The number of worker threads: the given one, else the available cores.
fn workers(given: Option<usize>) -> usize {
    given.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn model_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// The reports of one part of a corpus, optionally only the first `max`.
fn select_reports(
    corpus: &CorpusSpec,
    split: ReportSplit,
    part: ReportPart,
    max: Option<usize>,
) -> Result<Vec<Report>> {
    let mut reports = split.select(corpus.read()?, part)?;
    if let Some(m) = max {
        reports.truncate(m);
    }
    if reports.is_empty() {
        bail!("{corpus}: no reports in part '{part}'");
    }
    Ok(reports)
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
    /// Fraction of reports held out (the split is by report, seeded).
    #[arg(long, default_value_t = 0.1)]
    heldout_fraction: f64,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// raw (BOS + text) or chat (the text as the user turn of the chat template).
    #[arg(long, default_value = "raw")]
    template: Template,
    /// Report tokens per context window (longer reports are cut into several).
    #[arg(long, default_value_t = 256)]
    context: usize,
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
    };
    let reports = select_reports(&a.corpus, split, a.part, a.max_reports)?;
    let lm = load_lm(&a.model)?;
    let cfg = HarvestConfig {
        corpus: a.corpus.to_string(),
        part: a.part,
        split,
        layer: a.layer,
        window: WindowSpec {
            template: a.template,
            context_tokens: a.context,
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
        |p| {
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

impl TrainArgs {
    fn sae_config(&self, d_in: usize) -> Result<SaeConfig> {
        let d_sae = d_in * self.expansion;
        let activation = match self.arch {
            Arch::MatryoshkaBatchtopk | Arch::Batchtopk => Activation::BatchTopK { k: self.k },
            Arch::Topk => Activation::TopK { k: self.k },
            Arch::Relu => Activation::Relu {
                l1_coefficient: self.l1_coefficient,
            },
        };
        let groups = match (self.arch, &self.group_fractions) {
            (Arch::MatryoshkaBatchtopk, Some(f)) => group_sizes(d_sae, f)?,
            (Arch::MatryoshkaBatchtopk, None) => group_sizes(d_sae, &DEFAULT_GROUP_FRACTIONS)?,
            (_, Some(_)) => bail!("--group-fractions only applies to --arch matryoshka-batchtopk"),
            (_, None) => vec![d_sae],
        };
        let needs_threshold = matches!(activation, Activation::BatchTopK { .. });
        if needs_threshold && self.steps <= self.threshold_start_step {
            bail!(
                "--steps {} must exceed --threshold-start-step {} so that the BatchTopK \
                 inference threshold is learnt",
                self.steps,
                self.threshold_start_step
            );
        }
        Ok(SaeConfig::new(d_in, d_sae, activation, groups)?)
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
}

const HISTORY_HEADER: &str = "step,loss,aux_loss,l0,dead_fraction,grad_norm,lr,prefix_mse";

fn history_row(s: &StepStats) -> String {
    let prefix: Vec<String> = s.prefix_losses.iter().map(|v| format!("{v:.6}")).collect();
    format!(
        "{},{:.6},{:.6},{:.2},{:.4},{:.4},{:.3e},{}",
        s.step,
        s.loss,
        s.aux_loss,
        s.l0,
        s.dead_fraction,
        s.grad_norm,
        s.lr,
        prefix.join(";")
    )
}

/// Rows of an existing history.csv for steps before `steps_done`.
fn read_history(path: &Path, steps_done: u64) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s < steps_done)
        })
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, header: &str, rows: &[String]) -> Result<()> {
    let mut text = format!("{header}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    Ok(write_atomic(path, text.as_bytes())?)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    Ok(write_atomic(
        path,
        serde_json::to_string_pretty(value)?.as_bytes(),
    )?)
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let store = ActivationStore::open(&a.activations)?;
    let sae_cfg = a.sae_config(store.meta.d_model)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let ckpt = a.out.join("checkpoint.safetensors");
    let history_path = a.out.join("history.csv");
    let mut batches = store.shuffled_batches(a.batch, a.buffer_rows, a.seed)?;
    let mut next_batch = || -> Result<candle_core::Tensor> {
        Ok(batches.next().context("activation stream ended")??)
    };
    // A fresh run initialises from its first batch, then trains on it first.
    let mut pending = None;
    let mut trainer = if a.resume {
        let mut t =
            Trainer::resume(&ckpt).with_context(|| format!("resuming from {}", ckpt.display()))?;
        if t.sae().config() != &sae_cfg {
            bail!(
                "{}: the checkpoint's SAE ({:?}) differs from the one the arguments describe ({:?})",
                ckpt.display(),
                t.sae().config(),
                sae_cfg
            );
        }
        t.set_decay(a.train_config().adam.decay);
        // The data stream is a function of the seed: skip what the checkpoint has seen.
        for _ in 0..t.steps_done() {
            next_batch()?;
        }
        t
    } else {
        if ckpt.exists() {
            bail!(
                "{} already holds a checkpoint: pass --resume or choose another --out",
                a.out.display()
            );
        }
        let first = next_batch()?;
        let t = Trainer::new(sae_cfg, a.train_config(), &first)?;
        pending = Some(first);
        t
    };
    let mut history = read_history(&history_path, trainer.steps_done());
    let resumed_at = trainer.steps_done();
    let pb = bar(
        a.steps,
        "train {bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
    );
    pb.set_position(resumed_at);
    let start = Instant::now();
    let mut last = None;
    while trainer.steps_done() < a.steps {
        let batch = match pending.take() {
            Some(b) => b,
            None => next_batch()?,
        };
        let s = trainer.step(&batch)?;
        if s.step % a.log_every == 0 || s.step + 1 == a.steps {
            history.push(history_row(&s));
        }
        let done = trainer.steps_done();
        let rate = ((done - resumed_at) * a.batch as u64) as f64 / start.elapsed().as_secs_f64();
        pb.set_position(done);
        pb.set_message(format!(
            "loss {:.4} l0 {:.1} dead {:.1}% {rate:.0} tokens/s",
            s.loss,
            s.l0,
            100.0 * s.dead_fraction
        ));
        if done % a.checkpoint_every == 0 || done == a.steps {
            trainer.save_checkpoint(&ckpt)?;
            write_lines(&history_path, HISTORY_HEADER, &history)?;
            // A line per checkpoint, also when the bar is hidden (logs, pipes).
            let line = format!("step {done}: {}", pb.message());
            pb.suspend(|| eprintln!("{line}"));
        }
        last = Some((s, rate));
    }
    pb.finish();
    save_saelens(trainer.sae(), &a.out)?;
    let (stats, rate) = match last {
        Some((s, r)) => (serde_json::to_value(s)?, json!(r)),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    write_json(
        &a.out.join("train.json"),
        &json!({
            "activations": a.activations,
            "store": store.meta,
            "store_rows": store.rows(),
            "sae": trainer.sae().config(),
            "train": trainer.config(),
            "batch": a.batch,
            "steps": a.steps,
            "seed": a.seed,
            "buffer_rows": a.buffer_rows,
            "last_step": stats,
            "tokens_per_s": rate,
        }),
    )?;
    eprintln!(
        "{}: SAE ({} latents) after {} steps",
        a.out.display(),
        trainer.sae().config().d_sae,
        trainer.steps_done()
    );
    Ok(())
}

/// Loads an SAE directory in the SAELens layout, or dictionary_learning's (`ae.pt`).
fn load_sae(dir: &Path) -> Result<Sae> {
    let sae = if dir.join("ae.pt").exists() {
        load_dictionary_learning(dir)?
    } else {
        load_saelens(dir)?
    };
    Ok(sae)
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
    /// Loads both, checking that the SAE reads the store's width.
    fn open(&self) -> Result<(Sae, ActivationStore)> {
        let sae = load_sae(&self.sae)?;
        let store = ActivationStore::open(&self.activations)?;
        check_widths(&sae, &store)?;
        Ok((sae, store))
    }
}

/// Errors unless the SAE reads the store's width.
fn check_widths(sae: &Sae, store: &ActivationStore) -> Result<()> {
    if sae.config().d_in != store.meta.d_model {
        bail!(
            "the SAE reads {}-wide activations but {} holds {}-wide ones (model {}, layer {})",
            sae.config().d_in,
            store.dir().display(),
            store.meta.d_model,
            store.meta.model,
            store.meta.layer
        );
    }
    Ok(())
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
    /// Rows encoded at a time.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Worker threads sharing the model for the spliced loss (default: the available cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Output directory for metrics.json.
    #[arg(long)]
    out: PathBuf,
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let (sae, store) = a.input.open()?;
    let pb = bar(store.rows() as u64, "eval {bar:30} {pos}/{len} tokens");
    let metrics: Metrics = evaluate(
        &sae,
        store.batches(a.batch).inspect(|b| {
            if let Ok(b) = b {
                pb.inc(b.dims()[0] as u64);
            }
        }),
    )?;
    pb.finish();
    let mut out = json!({
        "sae": a.input.sae,
        "activations": a.input.activations,
        "store": store.meta,
        "reconstruction": metrics,
    });
    if let Some(model) = &a.model {
        let harvest = HarvestConfig::of_store(&store)?;
        let corpus: CorpusSpec = match &a.corpus {
            Some(c) => c.clone(),
            None => harvest.corpus.parse()?,
        };
        let reports = select_reports(&corpus, harvest.split, harvest.part, harvest.max_reports)?;
        let lm = load_lm(model)?;
        if model_name(model) != store.meta.model {
            eprintln!(
                "warning: the store was harvested from {}, not {}",
                store.meta.model,
                model_name(model)
            );
        }
        let pb = bar(
            reports.len() as u64,
            "splice {bar:30} {pos}/{len} reports {msg} [{elapsed_precise}<{eta_precise}]",
        );
        let cfg = SpliceConfig {
            layer: harvest.layer,
            window: harvest.window,
            max_tokens: a.max_tokens,
            workers: workers(a.workers),
        };
        let splice = splice_metrics(&lm, Arc::new(sae), &cfg, &reports, |done, tokens| {
            pb.set_position(done as u64);
            pb.set_message(format!("{tokens} tokens"));
        })?;
        pb.finish();
        out["language_model"] = json!({ "model": model, "corpus": corpus.to_string(),
            "part": harvest.part, "metrics": splice });
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let path = a.out.join("metrics.json");
    write_json(&path, &out)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!("wrote {}", path.display());
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
    let summary = build_feature_db(&sae, &store, &cfg, &provenance, &a.out, |done, _| {
        pb.set_position(done as u64)
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

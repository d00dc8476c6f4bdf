//! `radlens sae explain` and `radlens sae score` (radlens-interp's `autointerp`).

use crate::progress::bar;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use radlens_core::observe::Count;
use radlens_interp::autointerp::llm::{ChatModel, EndpointModel, LocalModel};
use radlens_interp::autointerp::ngram::NgramConfig;
use radlens_interp::autointerp::run::{
    explain, score, Autointerp, Explainer, Scorers, Selection, Target, SCORES,
};
use radlens_interp::inputs::{load_model, model_name};
use radlens_lm::{ChatClient, ClientConfig, SentenceEncoder};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The file a directory given as the feature database holds.
const FEATURE_DB: &str = "features.sqlite";

/// The feature database, the SAE and store it was built from, and which latents.
#[derive(Args)]
pub struct TargetArgs {
    /// Feature database (from `radlens sae features`), or a directory holding
    /// features.sqlite; explanations and scores are added to it.
    #[arg(long, alias = "features-db")]
    db: PathBuf,
    /// SAE directory (default: the one the database records).
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Activation store (default: the one the database records).
    #[arg(long)]
    activations: Option<PathBuf>,
    /// How many latents, chosen in turn from each Matryoshka group among those that fired
    /// at least --min-fires times.
    #[arg(long, default_value_t = 200)]
    features: usize,
    /// Exactly these latents instead (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "features")]
    feature_ids: Option<Vec<usize>>,
    #[arg(long, default_value_t = 20)]
    min_fires: u64,
    /// Seed of the latent choice and the example draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl TargetArgs {
    fn open(&self) -> Result<Autointerp> {
        let db = if self.db.is_dir() {
            self.db.join(FEATURE_DB)
        } else {
            self.db.clone()
        };
        let target = Target {
            db,
            sae: self.sae.clone(),
            activations: self.activations.clone(),
        };
        let selection = match &self.feature_ids {
            Some(ids) => Selection::Listed(ids.clone()),
            None => Selection::Stratified {
                count: self.features,
                min_fires: self.min_fires,
                seed: self.seed,
            },
        };
        Ok(Autointerp::open(&target, &selection)?)
    }
}

/// Where a language model (explainer or judge) runs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LlmKind {
    /// An OpenAI-compatible chat endpoint (--endpoint, --model).
    Endpoint,
    /// A local GGUF (--lm-model).
    Local,
}

/// A language model: an endpoint or a local GGUF.
#[derive(Args)]
pub struct LlmArgs {
    /// Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    endpoint: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long)]
    model: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Requests per second at most.
    #[arg(long)]
    requests_per_second: Option<f64>,
    /// Seconds before a request is abandoned (and retried).
    #[arg(long, default_value_t = 120.0)]
    timeout_s: f64,
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Local GGUF model.
    #[arg(long)]
    lm_model: Option<PathBuf>,
}

impl LlmArgs {
    fn load(&self, kind: LlmKind) -> Result<Box<dyn ChatModel>> {
        Ok(match kind {
            LlmKind::Endpoint => {
                let (Some(url), Some(model)) = (&self.endpoint, &self.model) else {
                    bail!("an endpoint model needs --endpoint URL and --model NAME");
                };
                if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
                    bail!("--timeout-s must be positive, got {}", self.timeout_s);
                }
                let client = ChatClient::new(ClientConfig {
                    api_key_env: self.api_key_env.clone(),
                    timeout: Duration::from_secs_f64(self.timeout_s),
                    max_retries: self.retries,
                    requests_per_second: self.requests_per_second,
                    ..ClientConfig::new(url)
                })?;
                Box::new(EndpointModel {
                    client,
                    model: model.clone(),
                })
            }
            LlmKind::Local => {
                let Some(path) = &self.lm_model else {
                    bail!("a local model needs --lm-model PATH (a GGUF)");
                };
                Box::new(LocalModel {
                    lm: Arc::new(load_model(path)?),
                    name: model_name(path),
                })
            }
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExplainerKind {
    /// Contrastive n-grams, no language model.
    Ngram,
    /// An OpenAI-compatible chat endpoint (--endpoint, --model).
    Endpoint,
    /// A local GGUF through radlens-lm (--lm-model).
    Local,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[arg(long, value_enum, default_value = "ngram")]
    explainer: ExplainerKind,
    #[command(flatten)]
    llm: LlmArgs,
    /// Examples shown to a language-model explainer (top and quantile ones in turn).
    #[arg(long, default_value_t = 20)]
    examples: usize,
    /// Tokens a language-model explainer may write.
    #[arg(long, default_value_t = 120)]
    max_tokens: usize,
}

pub fn explain_cmd(a: ExplainArgs) -> Result<()> {
    let model = match a.explainer {
        ExplainerKind::Ngram => None,
        ExplainerKind::Endpoint => Some(a.llm.load(LlmKind::Endpoint)?),
        ExplainerKind::Local => Some(a.llm.load(LlmKind::Local)?),
    };
    let explainer = match &model {
        None => Explainer::Ngram(NgramConfig::default()),
        Some(m) => Explainer::Llm {
            model: m.as_ref(),
            examples: a.examples,
            max_tokens: a.max_tokens,
        },
    };
    let mut ai = a.target.open()?;
    let pb = bar(
        ai.latents().len() as u64,
        "explain {bar:30} {pos}/{len} latents [{elapsed_precise}<{eta_precise}]",
    );
    let summary = explain(&mut ai, &explainer, a.target.seed, &|c: &Count| {
        pb.set_position(c.done)
    })?;
    pb.finish();
    eprintln!(
        "{}: {} latents, {} explained now, {} already explained",
        summary.explainer, summary.latents, summary.explained, summary.cached
    );
    Ok(())
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Explainers whose explanations are scored (repeat; default: all in the database).
    #[arg(long = "explainer")]
    explainers: Vec<String>,
    /// all-MiniLM-L6-v2 folder (config.json, model.safetensors, tokenizer.json): run the
    /// embedding scorer.
    #[arg(long)]
    minilm: Option<PathBuf>,
    /// Run the detection and fuzzing scorers with this judge.
    #[arg(long, value_enum)]
    judge: Option<LlmKind>,
    #[command(flatten)]
    llm: LlmArgs,
    /// Activating windows scored per latent (and as many silent ones).
    #[arg(long, default_value_t = 10)]
    examples: usize,
    /// Texts per judge request.
    #[arg(long, default_value_t = 5)]
    judge_batch: usize,
    /// Output directory for scores.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn score_cmd(a: ScoreArgs) -> Result<()> {
    let encoder = a.minilm.as_deref().map(SentenceEncoder::load).transpose()?;
    let judge = a.judge.map(|k| a.llm.load(k)).transpose()?;
    if encoder.is_none() && judge.is_none() {
        bail!("no scorer: give --minilm DIR (embedding) and/or --judge endpoint|local");
    }
    let scorers = Scorers {
        embedding: encoder.as_ref(),
        judge: judge.as_deref(),
        examples: a.examples,
        judge_batch: a.judge_batch,
    };
    let mut ai = a.target.open()?;
    let pb = bar(
        0,
        "score {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
    );
    let rows = score(
        &mut ai,
        &a.explainers,
        &scorers,
        a.target.seed,
        &a.out,
        &|c: &Count| {
            pb.set_length(c.total);
            pb.set_position(c.done)
        },
    )?;
    pb.finish();
    println!("explainer                            scorer            n  score [95% CI]");
    for r in &rows {
        println!(
            "{:<36} {:<14} {:>4}  {:.3} [{:.3}, {:.3}]",
            r.explainer, r.scorer, r.n_features, r.accuracy, r.ci_low, r.ci_high
        );
    }
    eprintln!("wrote {}", a.out.join(SCORES).display());
    Ok(())
}

//! A training run: an SAE trained on an activation store into an output directory
//! (`checkpoint.safetensors`, `history.csv`, the SAELens files and `train.json`), started
//! afresh or resumed from its checkpoint as if it had never stopped.
//!
//! The run trains only on the tokens its [`TokenPolicy`] keeps; the policy is fitted to the
//! whole store (median norm), the activation scale is the kept rows' mean squared norm over
//! the whole store, and the fitted filter is saved beside the SAE (`token_filter.json`) so
//! that evaluation and splicing exclude the same tokens.
//!
//! The data stream is a function of the seed alone: a fresh run initialises from the first
//! batch and then trains on it, and a resumed run skips the batches its checkpoint has
//! seen, so the steps after a resume see exactly the batches they would have seen.

use crate::config::{group_sizes, Activation, SaeConfig};
use crate::formats::save_saelens;
use crate::report::write_report;
use crate::store::{ActivationStore, StoreMeta};
use crate::tokens::{fit_filter, TokenCounts, TokenFilter, TokenPolicy};
use crate::train::{StepStats, TrainConfig, Trainer};
use crate::{Result, SaeError};
use candle_core::Tensor;
use radlens_core::{History, Observer, RunDir};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// The checkpoint file of a run; its presence marks a started run.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The per-step log of a run.
pub const HISTORY: &str = "history.csv";
/// The report of a run.
pub const REPORT: &str = "train.json";

const HISTORY_HEADER: &str = "step,loss,aux_loss,l0,dead_fraction,grad_norm,lr,prefix_mse";

/// The SAE to train, its dictionary sized relative to the store's activation width.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeSpec {
    /// Dictionary size as a multiple of the activation width.
    pub expansion: usize,
    pub activation: Activation,
    /// Matryoshka group fractions (the remainder goes to the last group); `None` for a
    /// single group, a plain SAE.
    pub group_fractions: Option<Vec<f64>>,
}

impl SaeSpec {
    /// The configuration for activations `d_in` wide.
    pub fn config(&self, d_in: usize) -> Result<SaeConfig> {
        let d_sae = d_in.checked_mul(self.expansion).ok_or_else(|| {
            SaeError::Config(format!("expansion {} is too large", self.expansion))
        })?;
        let groups = match &self.group_fractions {
            Some(f) => group_sizes(d_sae, f)?,
            None => vec![d_sae],
        };
        SaeConfig::new(d_in, d_sae, self.activation.clone(), groups)
    }
}

/// What to train on, how, for how long and where.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// Activation store (from a harvest).
    pub activations: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    pub sae: SaeSpec,
    /// Training settings; `train.seed` also seeds the data order. A resumed run keeps its
    /// checkpoint's settings except the learning-rate decay, taken from here so that a
    /// run can be extended.
    pub train: TrainConfig,
    /// Which tokens to train on.
    pub tokens: TokenPolicy,
    /// Tokens per step.
    pub batch: usize,
    /// Steps in all, counting those before a resume.
    pub steps: u64,
    /// Rows loaded and shuffled at a time.
    pub buffer_rows: usize,
    /// Steps between checkpoints (one is also written after the last step).
    pub checkpoint_every: u64,
    /// Steps between rows of `history.csv` (the last step always has one).
    pub log_every: u64,
    /// Continue from the run's checkpoint instead of starting a new run.
    pub resume: bool,
}

impl TrainRequest {
    fn validate(&self, sae: &SaeConfig) -> Result<()> {
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return Err(SaeError::Config(format!(
                "--checkpoint-every ({}) and --log-every ({}) must be positive",
                self.checkpoint_every, self.log_every
            )));
        }
        let threshold = self.train.threshold_start_step;
        if matches!(sae.activation, Activation::BatchTopK { .. }) && self.steps <= threshold {
            return Err(SaeError::Config(format!(
                "--steps {} must exceed --threshold-start-step {threshold} so that the \
                 BatchTopK inference threshold is learnt",
                self.steps
            )));
        }
        Ok(())
    }
}

/// Progress of a training run.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    /// Training starts (after 0 steps) or resumes after `steps_done` steps.
    Started { steps_done: u64 },
    /// A step was taken; `tokens_per_s` is this run's throughput so far.
    Step { stats: StepStats, tokens_per_s: f64 },
    /// The checkpoint and the history were written after `steps_done` steps.
    Checkpoint { steps_done: u64 },
}

/// `train.json`: what was trained, on what, and how the run's last step went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The activation store as given.
    pub activations: PathBuf,
    pub store: StoreMeta,
    pub store_rows: usize,
    /// The tokens trained on, and how many of the store's the filter kept and excluded.
    pub token_filter: TokenFilter,
    pub token_counts: TokenCounts,
    pub sae: SaeConfig,
    /// The settings trained with (a resumed run's are its checkpoint's).
    pub train: TrainConfig,
    pub batch: usize,
    pub steps: u64,
    pub seed: u64,
    pub buffer_rows: usize,
    /// The last step of this run; `None` if it took none.
    pub last_step: Option<StepStats>,
    /// This run's throughput; `None` if it took no step.
    pub tokens_per_s: Option<f64>,
}

/// What a finished run wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    pub report: TrainReport,
    /// Steps the SAE has been trained for, counting those before a resume.
    pub steps_done: u64,
}

/// Trains as `request` says, reporting progress to `observer`, and writes the run's files.
pub fn train_run(
    request: &TrainRequest,
    observer: &dyn Observer<TrainEvent>,
) -> Result<TrainOutcome> {
    let r = request;
    let store = ActivationStore::open(&r.activations)?;
    let sae_cfg = r.sae.config(store.meta.d_model)?;
    r.validate(&sae_cfg)?;
    let run = RunDir::open(&r.out, CHECKPOINT, r.resume)?;
    let ckpt = run.join(CHECKPOINT);
    let fitted = fit_filter(&store, r.tokens)?;
    if fitted.counts.kept < r.batch {
        return Err(SaeError::Config(format!(
            "{}: the token policy keeps {} rows, fewer than one batch of {}",
            r.activations.display(),
            fitted.counts.kept,
            r.batch
        )));
    }
    let mut batches = store
        .shuffled_batches(r.batch, r.buffer_rows, r.train.seed)?
        .filtered(Some(fitted.filter));
    let mut next_batch = || -> Result<Tensor> {
        batches
            .next()
            .ok_or_else(|| SaeError::format(&r.activations, "the activation stream ended"))?
    };
    // A fresh run initialises from its first batch, then trains on it first.
    let mut pending = None;
    let mut trainer = if r.resume {
        let mut t = Trainer::resume(&ckpt)?;
        if t.sae().config() != &sae_cfg {
            return Err(SaeError::Config(format!(
                "{}: the checkpoint's SAE ({:?}) differs from the one the arguments describe \
                 ({sae_cfg:?})",
                ckpt.display(),
                t.sae().config()
            )));
        }
        t.set_decay(r.train.adam.decay);
        for _ in 0..t.steps_done() {
            next_batch()?;
        }
        t
    } else {
        let first = next_batch()?;
        let scale = (store.meta.d_model as f64 / fitted.kept_mean_squared_norm).sqrt() as f32;
        let t = Trainer::with_scale(sae_cfg, r.train.clone(), scale, &first)?;
        pending = Some(first);
        t
    };
    let resumed_at = trainer.steps_done();
    let mut history = History::resume(&run.join(HISTORY), HISTORY_HEADER, resumed_at)?;
    observer.observe(&TrainEvent::Started {
        steps_done: resumed_at,
    });
    let start = Instant::now();
    let mut last = None;
    while trainer.steps_done() < r.steps {
        let batch = match pending.take() {
            Some(b) => b,
            None => next_batch()?,
        };
        let stats = trainer.step(&batch)?;
        if stats.step % r.log_every == 0 || stats.step + 1 == r.steps {
            history.push(history_row(&stats));
        }
        let done = trainer.steps_done();
        let tokens = (done - resumed_at) * r.batch as u64;
        let tokens_per_s = tokens as f64 / start.elapsed().as_secs_f64();
        observer.observe(&TrainEvent::Step {
            stats: stats.clone(),
            tokens_per_s,
        });
        if done % r.checkpoint_every == 0 || done == r.steps {
            trainer.save_checkpoint(&ckpt)?;
            history.save()?;
            observer.observe(&TrainEvent::Checkpoint { steps_done: done });
        }
        last = Some((stats, tokens_per_s));
    }
    save_saelens(trainer.sae(), run.root())?;
    fitted.filter.save(run.root())?;
    let (last_step, tokens_per_s) = last.unzip();
    let report = TrainReport {
        activations: r.activations.clone(),
        store: store.meta.clone(),
        store_rows: store.rows(),
        token_filter: fitted.filter,
        token_counts: fitted.counts,
        sae: trainer.sae().config().clone(),
        train: trainer.config().clone(),
        batch: r.batch,
        steps: r.steps,
        seed: r.train.seed,
        buffer_rows: r.buffer_rows,
        last_step,
        tokens_per_s,
    };
    write_report(&run.join(REPORT), &report)?;
    Ok(TrainOutcome {
        report,
        steps_done: trainer.steps_done(),
    })
}

/// A `history.csv` row (see `HISTORY_HEADER`); the prefix losses are `;`-separated.
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

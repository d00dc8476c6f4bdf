//! Evaluating an SAE on an activation store: reconstruction metrics over every row and,
//! given the language model, the model's loss with the SAE spliced in on the reports the
//! store was harvested from; written as `metrics.json`, headline numbers first. Both use
//! the token filter the SAE was trained with (`token_filter.json` beside it; an SAE without
//! one, e.g. a released `ae.pt`, gets the default policy fitted to the evaluated store).

use crate::harvest::HarvestConfig;
use crate::inputs::{load_model, model_name, select_reports};
use crate::splice::{splice_metrics, SpliceConfig, SpliceMetrics, SpliceProgress};
use crate::{InterpError, Result};
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_report::{CorpusSpec, ReportPart};
use radlens_sae::formats::load_sae;
use radlens_sae::metrics::{evaluate_store, Metrics};
use radlens_sae::report::write_report;
use radlens_sae::tokens::{fit_filter, TokenFilter, TokenPolicy};
use radlens_sae::{ActivationStore, Sae, StoreMeta};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The report file an evaluation writes in its output directory.
pub const REPORT: &str = "metrics.json";

/// What to evaluate, on what, and where the report goes.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    /// SAE directory (SAELens layout, or dictionary_learning's `ae.pt`).
    pub sae: PathBuf,
    /// Activation store (held-out reports).
    pub activations: PathBuf,
    /// Also measure the language model's loss with the SAE spliced in.
    pub language_model: Option<SpliceRequest>,
    /// Output directory for the report.
    pub out: PathBuf,
}

/// How to measure the spliced language-model loss.
#[derive(Clone, Debug)]
pub struct SpliceRequest {
    /// GGUF model (normally the one the store was harvested from).
    pub model: PathBuf,
    /// Corpus of the reports; `None` for the one the store was harvested from.
    pub corpus: Option<CorpusSpec>,
    /// Stop after about this many scored tokens.
    pub max_tokens: Option<usize>,
    /// Model copies run in parallel.
    pub workers: usize,
}

/// Progress of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalEvent {
    /// Rows of the store encoded so far.
    Encoded(Count),
    /// The model differs from the one the store was harvested from (by file name).
    OtherModel { store_model: String, model: String },
    /// Reports scored so far with the SAE spliced in, of `reports_total`.
    Spliced {
        progress: SpliceProgress,
        reports_total: usize,
    },
}

/// `metrics.json`: the headline numbers (names scripts read), then the details.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// FVU on the tokens the filter keeps.
    pub fvu: f64,
    /// FVU on every token.
    pub fvu_all_tokens: f64,
    /// Latents that never fire on a kept token.
    pub dead_fraction: f64,
    /// Next-token CE (nats) clean, with the SAE spliced in, with the layer zeroed (kept
    /// tokens); `None` without a language model.
    pub ce_clean: Option<f64>,
    pub ce_spliced: Option<f64>,
    pub ce_zero_ablated: Option<f64>,
    /// `ce_spliced - ce_clean`.
    pub delta_ce: Option<f64>,
    /// The same for noise of the SAE error's per-token norm; the SAE should beat it.
    pub noise_control_delta_ce: Option<f64>,
    /// KL(clean || spliced) per scored token.
    pub kl: Option<f64>,
    /// Where the token filter came from.
    pub token_filter_from: FilterSource,
    /// The SAE directory as given.
    pub sae: PathBuf,
    /// The activation store as given.
    pub activations: PathBuf,
    pub store: StoreMeta,
    pub reconstruction: Metrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_model: Option<LanguageModelReport>,
}

/// Where an evaluation's token filter came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterSource {
    /// The SAE's `token_filter.json`.
    Sae,
    /// The default policy fitted to the evaluated store (the SAE has no filter).
    EvaluatedStore,
}

/// The spliced language-model loss and what it was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LanguageModelReport {
    /// The model as given.
    pub model: PathBuf,
    pub corpus: String,
    pub part: ReportPart,
    pub metrics: SpliceMetrics,
}

/// Evaluates as `request` says, reporting progress to `observer`, and writes the report
/// to `request.out`/[`REPORT`].
pub fn evaluate_sae(
    request: &EvalRequest,
    observer: &dyn Observer<EvalEvent>,
) -> Result<EvalReport> {
    let sae = load_sae(&request.sae)?;
    let store = ActivationStore::open(&request.activations)?;
    let (filter, token_filter_from) = match TokenFilter::load(&request.sae)? {
        Some(f) => (f, FilterSource::Sae),
        None => (
            fit_filter(&store, TokenPolicy::default())?.filter,
            FilterSource::EvaluatedStore,
        ),
    };
    let reconstruction = evaluate_store(&sae, &store, &filter, &|c: &Count| {
        observer.observe(&EvalEvent::Encoded(*c))
    })?;
    let language_model = match &request.language_model {
        Some(splice) => Some(spliced_loss(splice, sae, &store, filter, observer)?),
        None => None,
    };
    let lm = language_model.as_ref().map(|l| &l.metrics);
    let report = EvalReport {
        fvu: reconstruction.fvu,
        fvu_all_tokens: reconstruction.fvu_all_tokens,
        dead_fraction: reconstruction.dead_fraction,
        ce_clean: lm.map(|m| m.ce_clean),
        ce_spliced: lm.map(|m| m.ce_spliced),
        ce_zero_ablated: lm.map(|m| m.ce_zero_ablation),
        delta_ce: lm.map(|m| m.delta_ce),
        noise_control_delta_ce: lm.map(|m| m.noise_delta_ce),
        kl: lm.map(|m| m.kl_spliced),
        token_filter_from,
        sae: request.sae.clone(),
        activations: request.activations.clone(),
        store: store.meta,
        reconstruction,
        language_model,
    };
    write_report(&request.out.join(REPORT), &report)?;
    Ok(report)
}

/// The loss with `sae` spliced in at the store's layer, on the reports and windows the
/// store was harvested from.
fn spliced_loss(
    request: &SpliceRequest,
    sae: Sae,
    store: &ActivationStore,
    tokens: TokenFilter,
    observer: &dyn Observer<EvalEvent>,
) -> Result<LanguageModelReport> {
    let harvest = HarvestConfig::of_store(store)?;
    let corpus = match &request.corpus {
        Some(c) => c.clone(),
        None => harvest.corpus.parse()?,
    };
    let reports = select_reports(&corpus, harvest.split, harvest.part, harvest.max_reports)?;
    let lm = load_model(&request.model)?;
    let windower = harvest.windower(&lm, &corpus)?;
    let prefix = windower.prefix();
    if let Some(recorded) = &store.meta.context_prefix {
        if recorded.ids != prefix {
            return Err(InterpError::invalid(format!(
                "{}: the store's windows start with tokens {:?} ({:?}) but this model's \
                 template gives {prefix:?}: the spliced loss would be measured in another \
                 context than the activations",
                store.dir().display(),
                recorded.ids,
                recorded.text
            )));
        }
    }
    let model = model_name(&request.model);
    if model != store.meta.model {
        observer.observe(&EvalEvent::OtherModel {
            store_model: store.meta.model.clone(),
            model,
        });
    }
    let cfg = SpliceConfig {
        layer: harvest.layer,
        windower,
        tokens,
        max_tokens: request.max_tokens,
        workers: request.workers,
    };
    let reports_total = reports.len();
    let metrics = splice_metrics(&lm, Arc::new(sae), &cfg, &reports, &|p: &SpliceProgress| {
        observer.observe(&EvalEvent::Spliced {
            progress: *p,
            reports_total,
        })
    })?;
    Ok(LanguageModelReport {
        model: request.model.clone(),
        corpus: corpus.to_string(),
        part: harvest.part,
        metrics,
    })
}

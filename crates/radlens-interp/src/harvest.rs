//! Activation harvesting: run report texts through the language model and store the
//! residual stream at one layer, one row per report token, with token metadata.
//!
//! The hook point is the output of block `layer` (`resid_post.{layer}`, dictionary_learning's
//! `model.layers[layer]` output). Template tokens (document separator, system turn, user
//! header) are run but not stored; the store's `meta.json` records them (`context_prefix`). Shards are written every `shard_tokens` rows at report boundaries, so
//! an interrupted harvest resumes after the last report of its last shard.

use crate::inputs::example_reports;
use crate::parallel::map_items;
use crate::window::{WindowSpec, Windower};
use crate::{InterpError, Result};
use candle_core::Tensor;
use radlens_lm::{HookPoint, Hooks, LanguageModel};
use radlens_report::{CorpusSpec, Report, ReportPart, ReportSplit};
use radlens_sae::{ActivationStore, ContextPrefix, StoreMeta, TokenRecord};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a harvest reads and how; saved as the store's `source`, so that a resumed run can
/// check that it continues the same harvest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarvestConfig {
    /// The corpus as given on the command line (`iu-xray:<dir>`).
    pub corpus: String,
    pub part: ReportPart,
    pub split: ReportSplit,
    /// Block whose output is harvested.
    pub layer: usize,
    pub window: WindowSpec,
    /// Rows per shard (a shard ends at the first report boundary past this many).
    pub shard_tokens: usize,
    /// Only the first N reports of the part, if set.
    #[serde(default)]
    pub max_reports: Option<usize>,
}

impl HarvestConfig {
    /// The hook point harvested.
    pub fn point(&self) -> HookPoint {
        HookPoint::ResidPost(self.layer)
    }

    /// The windows of this harvest, their example reports (if any) read from `corpus`.
    pub fn windower(&self, lm: &LanguageModel, corpus: &CorpusSpec) -> Result<Windower> {
        let shots = example_reports(corpus, self.split, self.window.shots)?;
        Windower::new(lm, &self.window, &shots)
    }

    /// Reads the harvest settings back from a store made by [`harvest`].
    pub fn of_store(store: &ActivationStore) -> Result<Self> {
        Self::from_meta(&store.meta)
            .map_err(|e| InterpError::invalid(format!("{}: {e}", store.dir().display())))
    }

    /// The harvest settings a store's metadata records (also kept in an SAE's
    /// `train.json`).
    pub fn from_meta(meta: &StoreMeta) -> Result<Self> {
        let source = meta.source.clone().ok_or_else(|| {
            InterpError::invalid("the store does not record how it was harvested")
        })?;
        serde_json::from_value(source).map_err(|e| {
            InterpError::invalid(format!("unreadable harvest settings in meta.json: {e}"))
        })
    }
}

/// Progress after each report.
#[derive(Debug, Clone, Copy)]
pub struct HarvestProgress {
    pub reports_done: usize,
    pub reports_total: usize,
    /// Tokens stored by this run (not counting a resumed store's earlier shards).
    pub tokens_done: usize,
}

/// What a harvest did.
#[derive(Debug, Clone, Serialize)]
pub struct HarvestSummary {
    /// Rows in the store.
    pub tokens: usize,
    pub shards: usize,
    pub reports: usize,
    /// Reports already stored by an earlier, interrupted run.
    pub resumed_after_reports: usize,
}

/// Harvests `reports` into the store at `out` (created, or resumed if it holds an
/// unfinished harvest of the same settings and model), running the model on `workers`
/// reports at once (the output does not depend on it).
pub fn harvest(
    lm: &LanguageModel,
    model_name: &str,
    reports: &[Report],
    cfg: &HarvestConfig,
    out: &Path,
    workers: usize,
    progress: &dyn radlens_core::Observer<HarvestProgress>,
) -> Result<HarvestSummary> {
    let point = cfg.point();
    lm.model.check_point(point)?;
    if cfg.shard_tokens == 0 {
        return Err(InterpError::invalid("shard size must be positive"));
    }
    let windower = cfg.windower(lm, &cfg.corpus.parse()?)?;
    let d_model = lm.model.config().hidden_size;
    let source = serde_json::to_value(cfg).map_err(|e| InterpError::invalid(e.to_string()))?;
    let prefix = ContextPrefix {
        ids: windower.prefix().to_vec(),
        text: lm.tokenizer.decode(windower.prefix(), false)?,
    };
    let mut store = open_or_create(out, model_name, d_model, cfg.layer, point, source, prefix)?;
    let start = resume_point(&store)?;
    if store.meta.complete {
        return Ok(summary(&store, reports.len(), start));
    }
    if start > reports.len() {
        return Err(InterpError::invalid(format!(
            "{}: the store covers {start} reports but the corpus part has only {}",
            out.display(),
            reports.len()
        )));
    }
    let mut rows: Vec<Tensor> = Vec::new();
    let mut records: Vec<TokenRecord> = Vec::new();
    let mut shard_start = start;
    let mut tokens_done = 0;
    let workers = workers.max(1);
    let mut next = start;
    for group in reports[start..].chunks(workers * REPORTS_PER_WORKER) {
        let windows = group
            .iter()
            .map(|r| windower.windows(lm, &r.text()))
            .collect::<Result<Vec<_>>>()?;
        let acts = map_items(&windows, workers, |report_windows| {
            report_windows
                .iter()
                .map(|w| {
                    let cache = windower.prefix_cache();
                    Ok(lm
                        .model
                        .residual_after(cache, w.content(), point, &mut Hooks::new())?)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for ((report, windows), acts) in group.iter().zip(&windows).zip(acts) {
            for (w, x) in windows.iter().zip(acts) {
                rows.push(x);
                for (j, &id) in w.content().iter().enumerate() {
                    records.push(TokenRecord {
                        doc: report.uid.clone(),
                        position: (w.first_position + j) as u32,
                        token_id: id,
                        text: lm.tokenizer.decode(&[id], false)?,
                    });
                }
                tokens_done += w.content().len();
            }
            next += 1;
            let last = next == reports.len();
            if !records.is_empty() && (records.len() >= cfg.shard_tokens || last) {
                write_shard(&mut store, &rows, &records, (shard_start, next))?;
                rows.clear();
                records.clear();
                shard_start = next;
            }
        }
        progress.observe(&HarvestProgress {
            reports_done: next,
            reports_total: reports.len(),
            tokens_done,
        });
    }
    store.finish()?;
    Ok(summary(&store, reports.len(), start))
}

/// Reports a worker takes per round.
const REPORTS_PER_WORKER: usize = 8;

fn open_or_create(
    out: &Path,
    model_name: &str,
    d_model: usize,
    layer: usize,
    point: HookPoint,
    source: serde_json::Value,
    prefix: ContextPrefix,
) -> Result<ActivationStore> {
    if !out.join("meta.json").exists() {
        let meta = StoreMeta {
            hook: Some(point.to_string()),
            source: Some(source),
            context_prefix: Some(prefix),
            ..StoreMeta::new(d_model, layer, model_name)
        };
        return Ok(ActivationStore::create(out, meta)?);
    }
    let store = ActivationStore::open_partial(out)?;
    let same = store.meta.model == model_name
        && store.meta.d_model == d_model
        && store.meta.source.as_ref() == Some(&source)
        && store.meta.context_prefix.as_ref() == Some(&prefix);
    if !same {
        return Err(InterpError::invalid(format!(
            "{} holds activations of another harvest (model {}, settings {}): choose another \
             --out or delete it",
            out.display(),
            store.meta.model,
            store
                .meta
                .source
                .as_ref()
                .map_or("none".into(), |s| s.to_string())
        )));
    }
    Ok(store)
}

/// The number of reports the store's shards already cover.
fn resume_point(store: &ActivationStore) -> Result<usize> {
    let mut end = 0;
    for s in store.shards() {
        let (_, e) = s.doc_range()?.ok_or_else(|| {
            InterpError::invalid(format!(
                "{}: shard has no report range; it was not written by a harvest",
                s.path.display()
            ))
        })?;
        end = end.max(e);
    }
    Ok(end)
}

/// Appends one shard, refusing non-finite activations.
fn write_shard(
    store: &mut ActivationStore,
    rows: &[Tensor],
    records: &[TokenRecord],
    doc_range: (usize, usize),
) -> Result<()> {
    let acts = Tensor::cat(rows, 0)?;
    let total = acts.abs()?.sum_all()?.to_scalar::<f32>()?;
    if !total.is_finite() {
        return Err(InterpError::invalid(format!(
            "non-finite activations in reports {}..{} (first report {}): nothing written",
            doc_range.0,
            doc_range.1,
            records.first().map_or("?", |r| r.doc.as_str())
        )));
    }
    Ok(store.append_shard(&acts, records, doc_range)?)
}

fn summary(store: &ActivationStore, reports: usize, start: usize) -> HarvestSummary {
    HarvestSummary {
        tokens: store.rows(),
        shards: store.shards().len(),
        reports,
        resumed_after_reports: start,
    }
}

//! Language-model loss with an SAE spliced into the residual stream.
//!
//! For each report window the model runs three times: clean, with the report tokens'
//! residual at the SAE's layer replaced by the SAE reconstruction, and with it replaced by
//! zeros. Next-token cross-entropy is scored on the report's own tokens (predictions made
//! at report positions; template tokens are neither spliced nor scored, as the SAE never
//! saw them). `ce_loss_recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)` (1 is a
//! perfect SAE, 0 no better than deleting the residual); KL is KL(clean || edited) per
//! scored token, in nats.

use crate::parallel::map_items;
use crate::window::{Window, WindowSpec, Windower};
use crate::{InterpError, Result};
use candle_core::{DType, Tensor};
use radlens_lm::{HookPoint, HookedLlama, Hooks, LanguageModel};
use radlens_report::Report;
use radlens_sae::Sae;
use serde::Serialize;
use std::sync::Arc;

/// Loss of the model with the SAE spliced in, against the clean and zero-ablated model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SpliceMetrics {
    /// Scored next-token predictions.
    pub tokens: usize,
    pub reports: usize,
    pub ce_clean: f64,
    pub ce_spliced: f64,
    pub ce_zero_ablation: f64,
    pub ce_loss_recovered: f64,
    pub kl_spliced: f64,
    pub kl_zero_ablation: f64,
}

/// Running sums of the three runs.
#[derive(Default)]
struct Sums {
    tokens: usize,
    ce: [f64; 3],
    kl: [f64; 2],
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.tokens += other.tokens;
        for (a, b) in self.ce.iter_mut().zip(other.ce) {
            *a += b;
        }
        for (a, b) in self.kl.iter_mut().zip(other.kl) {
            *a += b;
        }
    }
}

/// Reports a worker takes per round.
const REPORTS_PER_WORKER: usize = 4;

/// Where to splice and how much to score.
#[derive(Debug, Clone)]
pub struct SpliceConfig {
    /// The SAE replaces the output of this block.
    pub layer: usize,
    pub window: WindowSpec,
    /// Stop after about this many scored predictions.
    pub max_tokens: Option<usize>,
    /// Threads running the model on different reports at once.
    pub workers: usize,
}

/// Progress after each round of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceProgress {
    pub reports_done: usize,
    pub tokens_scored: usize,
}

/// Scores `reports` with `sae` spliced in as `cfg` says.
pub fn splice_metrics(
    lm: &LanguageModel,
    sae: Arc<Sae>,
    cfg: &SpliceConfig,
    reports: &[Report],
    progress: &dyn radlens_core::Observer<SpliceProgress>,
) -> Result<SpliceMetrics> {
    let (layer, window, max_tokens, workers) =
        (cfg.layer, &cfg.window, cfg.max_tokens, cfg.workers);
    let point = HookPoint::ResidPost(layer);
    lm.model.check_point(point)?;
    let hidden = lm.model.config().hidden_size;
    if sae.config().d_in != hidden {
        return Err(InterpError::invalid(format!(
            "the SAE reads {}-wide activations but the model's residual stream is {hidden} wide",
            sae.config().d_in
        )));
    }
    let windower = Windower::new(lm, window)?;
    let workers = workers.max(1);
    let mut sums = Sums::default();
    let mut done = 0;
    for group in reports.chunks(workers * REPORTS_PER_WORKER) {
        if max_tokens.is_some_and(|m| sums.tokens >= m) {
            break;
        }
        let windows: Vec<Window> = group
            .iter()
            .map(|r| windower.windows(lm, &r.text()))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .filter(|w| w.content().len() >= 2)
            .collect();
        let parts = map_items(&windows, workers, |w| {
            let runs = [None, Some(Edit::Splice(sae.clone())), Some(Edit::Zero)]
                .map(|edit| run(&lm.model, &w.ids, w.content_start, point, edit));
            let [clean, spliced, zero] = runs;
            score(&clean?, &spliced?, &zero?, &w.ids, w.content_start)
        })?;
        for p in parts {
            sums.add(&p);
        }
        done += group.len();
        progress.observe(&SpliceProgress {
            reports_done: done,
            tokens_scored: sums.tokens,
        });
    }
    if sums.tokens == 0 {
        return Err(InterpError::invalid(
            "no report has two tokens in a window: nothing to score",
        ));
    }
    let n = sums.tokens as f64;
    let [clean, spliced, zero] = sums.ce.map(|c| c / n);
    Ok(SpliceMetrics {
        tokens: sums.tokens,
        reports: done,
        ce_clean: clean,
        ce_spliced: spliced,
        ce_zero_ablation: zero,
        ce_loss_recovered: (zero - spliced) / (zero - clean),
        kl_spliced: sums.kl[0] / n,
        kl_zero_ablation: sums.kl[1] / n,
    })
}

/// What replaces the report positions' residual at the hook point.
enum Edit {
    Splice(Arc<Sae>),
    Zero,
}

/// Logits `(tokens, vocab)` of `ids` as a new sequence, with `edit` (if any) applied from
/// row `from`.
fn run(
    model: &HookedLlama,
    ids: &[u32],
    from: usize,
    point: HookPoint,
    edit: Option<Edit>,
) -> Result<Tensor> {
    let mut hooks = Hooks::new();
    if let Some(edit) = edit {
        hooks.replace(point, move |_, x| {
            let rows = x.narrow(0, from, x.dim(0)? - from)?;
            let new = match &edit {
                Edit::Zero => rows.zeros_like()?,
                Edit::Splice(sae) => sae
                    .encode(&rows)
                    .and_then(|c| sae.decode(&c))
                    .map_err(|e| candle_core::Error::Msg(format!("SAE splice: {e}")))?,
            };
            Tensor::cat(&[x.narrow(0, 0, from)?, new], 0)
        });
    }
    Ok(model.forward(ids, &mut model.new_cache(), &mut hooks)?)
}

/// Log-probabilities of each row of `logits`, in f64.
fn log_probs(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(logits
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?
        .into_iter()
        .map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            row.into_iter().map(|v| v - lse).collect()
        })
        .collect())
}

/// KL(p || q) of two log-probability rows.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// The sums of the predictions at positions `from..len-1` (targets `ids[p + 1]`).
fn score(
    clean: &Tensor,
    spliced: &Tensor,
    zero: &Tensor,
    ids: &[u32],
    from: usize,
) -> Result<Sums> {
    let mut sums = Sums::default();
    let [clean, spliced, zero] = [clean, spliced, zero].map(log_probs);
    let (clean, spliced, zero) = (clean?, spliced?, zero?);
    for p in from..ids.len() - 1 {
        let target = ids[p + 1] as usize;
        let runs = [&clean[p], &spliced[p], &zero[p]];
        for (ce, lp) in sums.ce.iter_mut().zip(runs) {
            let v = -lp[target];
            if !v.is_finite() {
                return Err(InterpError::invalid(format!(
                    "non-finite cross-entropy at position {p}"
                )));
            }
            *ce += v;
        }
        sums.kl[0] += kl(&clean[p], &spliced[p]);
        sums.kl[1] += kl(&clean[p], &zero[p]);
        sums.tokens += 1;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probs_and_kl_match_hand_values() {
        let logits = Tensor::new(
            &[[0f32, 0.0], [(3f32).ln(), 0.0]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let lp = log_probs(&logits).unwrap();
        assert!((lp[0][0] - 0.5f64.ln()).abs() < 1e-12);
        assert!((lp[1][0] - 0.75f64.ln()).abs() < 1e-7);
        assert_eq!(kl(&lp[0], &lp[0]), 0.0);
        // KL((1/2, 1/2) || (3/4, 1/4)) = 1/2 ln(2/3) + 1/2 ln 2.
        let want = 0.5 * (2.0f64 / 3.0).ln() + 0.5 * 2f64.ln();
        assert!((kl(&lp[0], &lp[1]) - want).abs() < 1e-7);
    }
}

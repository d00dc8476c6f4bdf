//! Language-model loss with an SAE spliced into the residual stream.
//!
//! For each report window the model runs four times: clean; with the residual at the SAE's
//! layer replaced by the SAE reconstruction; with random noise of the same per-token norm as
//! the SAE's error added instead (the control an SAE must beat: an error that size in a
//! random direction); and with the residual zeroed. Edits apply only at the report tokens
//! the SAE's [`TokenFilter`] keeps (the tokens it was trained and measured on); excluded
//! tokens and template tokens keep their clean residual. Next-token cross-entropy is scored
//! on every prediction made at a report position. `delta_ce = CE_spliced - CE_clean`,
//! `ce_loss_recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)`; KL is
//! KL(clean || edited) per scored token, in nats.

use crate::parallel::map_items;
use crate::window::{Window, Windower};
use crate::{InterpError, Result};
use candle_core::{DType, Device, Tensor};
use radlens_eval::stats::bootstrap_ci;
use radlens_lm::{HookPoint, HookedLlama, Hooks, KvCache, LanguageModel};
use radlens_report::Report;
use radlens_sae::metrics::{position_bucket, POSITION_BUCKETS};
use radlens_sae::tokens::{TokenClass, TokenCounts, TokenFilter};
use radlens_sae::Sae;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use std::sync::Arc;

/// Loss of the model with the SAE spliced in, against the clean, noise-control and
/// zero-ablated model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SpliceMetrics {
    /// Scored next-token predictions.
    pub tokens: usize,
    pub reports: usize,
    /// Report tokens edited (kept by the filter) and left clean, by reason.
    pub token_counts: TokenCounts,
    pub ce_clean: f64,
    pub ce_spliced: f64,
    pub ce_noise: f64,
    pub ce_zero_ablation: f64,
    /// `ce_spliced - ce_clean`.
    pub delta_ce: f64,
    /// `ce_noise - ce_clean`.
    pub noise_delta_ce: f64,
    /// 95% bootstrap intervals of `delta_ce` and `noise_delta_ce`, resampling reports
    /// (the unit the text varies by; a report's predictions are not independent).
    pub delta_ce_ci95: (f64, f64),
    pub noise_delta_ce_ci95: (f64, f64),
    pub ce_loss_recovered: f64,
    pub kl_spliced: f64,
    pub kl_noise: f64,
    pub kl_zero_ablation: f64,
    /// The losses by the report position of the prediction.
    pub per_position: Vec<PositionLoss>,
}

/// Mean losses of the predictions made at some report positions.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PositionLoss {
    pub first_position: u32,
    /// `None` for the open last bucket.
    pub last_position: Option<u32>,
    pub tokens: usize,
    pub ce_clean: f64,
    pub delta_ce: f64,
    pub noise_delta_ce: f64,
}

/// The runs, in the order of [`Sums::ce`].
const RUNS: usize = 4;
const CLEAN: usize = 0;
const SPLICED: usize = 1;
const NOISE: usize = 2;
const ZERO: usize = 3;

/// Running sums of the runs.
#[derive(Default)]
struct Sums {
    tokens: usize,
    ce: [f64; RUNS],
    /// KL(clean || run) for each run (the clean entry stays 0).
    kl: [f64; RUNS],
    counts: TokenCounts,
    /// Per position bucket: predictions and CE sums.
    bucket_tokens: [usize; POSITION_BUCKETS.len()],
    bucket_ce: [[f64; RUNS]; POSITION_BUCKETS.len()],
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.tokens += other.tokens;
        for r in 0..RUNS {
            self.ce[r] += other.ce[r];
            self.kl[r] += other.kl[r];
        }
        self.counts.kept += other.counts.kept;
        self.counts.early_position += other.counts.early_position;
        self.counts.large_norm += other.counts.large_norm;
        for b in 0..POSITION_BUCKETS.len() {
            self.bucket_tokens[b] += other.bucket_tokens[b];
            for r in 0..RUNS {
                self.bucket_ce[b][r] += other.bucket_ce[b][r];
            }
        }
    }
}

/// One report's prediction count and CE sums, for the bootstrap over reports.
#[derive(Clone, Copy, Default)]
struct ReportLoss {
    tokens: usize,
    ce: [f64; RUNS],
}

impl ReportLoss {
    fn add(&mut self, window: &Sums) {
        self.tokens += window.tokens;
        for r in 0..RUNS {
            self.ce[r] += window.ce[r];
        }
    }
}

/// Bootstrap resamples of the delta-CE intervals.
const RESAMPLES: usize = 1000;

/// 95% interval of `CE_run - CE_clean` (pooled over predictions) with reports resampled.
fn delta_ci(per_report: &[ReportLoss], run: usize) -> (f64, f64) {
    bootstrap_ci(per_report.len(), RESAMPLES, 0, |idx| {
        let (mut diff, mut n) = (0.0, 0usize);
        for &i in idx {
            diff += per_report[i].ce[run] - per_report[i].ce[CLEAN];
            n += per_report[i].tokens;
        }
        diff / n as f64
    })
}

/// Reports a worker takes per round.
const REPORTS_PER_WORKER: usize = 4;

/// Where to splice, at which tokens and how much to score.
#[derive(Debug, Clone)]
pub struct SpliceConfig {
    /// The SAE replaces the output of this block.
    pub layer: usize,
    /// The windows of the store the SAE was evaluated on.
    pub windower: Windower,
    /// The tokens edited (the SAE's own filter).
    pub tokens: TokenFilter,
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
    let (layer, windower, max_tokens, workers) =
        (cfg.layer, &cfg.windower, cfg.max_tokens, cfg.workers);
    let point = HookPoint::ResidPost(layer);
    lm.model.check_point(point)?;
    let hidden = lm.model.config().hidden_size;
    if sae.config().d_in != hidden {
        return Err(InterpError::invalid(format!(
            "the SAE reads {}-wide activations but the model's residual stream is {hidden} wide",
            sae.config().d_in
        )));
    }
    let workers = workers.max(1);
    let mut sums = Sums::default();
    let mut per_report: Vec<ReportLoss> = Vec::with_capacity(reports.len());
    let mut done = 0;
    for group in reports.chunks(workers * REPORTS_PER_WORKER) {
        if max_tokens.is_some_and(|m| sums.tokens >= m) {
            break;
        }
        // Each window with the index of its report in `per_report`.
        let mut windows: Vec<(usize, Window)> = Vec::new();
        for (i, r) in group.iter().enumerate() {
            let scored = windower.windows(lm, &r.text())?.into_iter();
            windows.extend(
                scored
                    .filter(|w| w.content().len() >= 2)
                    .map(|w| (done + i, w)),
            );
        }
        let parts = map_items(&windows, workers, |(_, w)| {
            score_window(&lm.model, windower, &sae, &cfg.tokens, point, w)
        })?;
        per_report.resize(done + group.len(), ReportLoss::default());
        for ((report, _), p) in windows.iter().zip(parts) {
            per_report[*report].add(&p);
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
    let ce = sums.ce.map(|c| c / n);
    let kl = sums.kl.map(|c| c / n);
    let per_position = (0..POSITION_BUCKETS.len())
        .filter(|&b| sums.bucket_tokens[b] > 0)
        .map(|b| {
            let nb = sums.bucket_tokens[b] as f64;
            let c = sums.bucket_ce[b].map(|v| v / nb);
            PositionLoss {
                first_position: POSITION_BUCKETS[b],
                last_position: POSITION_BUCKETS.get(b + 1).map(|n| n - 1),
                tokens: sums.bucket_tokens[b],
                ce_clean: c[CLEAN],
                delta_ce: c[SPLICED] - c[CLEAN],
                noise_delta_ce: c[NOISE] - c[CLEAN],
            }
        })
        .collect();
    Ok(SpliceMetrics {
        tokens: sums.tokens,
        reports: done,
        token_counts: sums.counts,
        ce_clean: ce[CLEAN],
        ce_spliced: ce[SPLICED],
        ce_noise: ce[NOISE],
        ce_zero_ablation: ce[ZERO],
        delta_ce: ce[SPLICED] - ce[CLEAN],
        noise_delta_ce: ce[NOISE] - ce[CLEAN],
        delta_ce_ci95: delta_ci(&per_report, SPLICED),
        noise_delta_ce_ci95: delta_ci(&per_report, NOISE),
        ce_loss_recovered: (ce[ZERO] - ce[SPLICED]) / (ce[ZERO] - ce[CLEAN]),
        kl_spliced: kl[SPLICED],
        kl_noise: kl[NOISE],
        kl_zero_ablation: kl[ZERO],
        per_position,
    })
}

/// What replaces the kept report tokens' residual at the hook point.
#[derive(Clone)]
enum Edit {
    Splice(Arc<Sae>),
    /// The residual plus a random direction scaled to the SAE error's norm, per token.
    Noise(Arc<Sae>, u64),
    Zero,
}

impl Edit {
    fn apply(&self, rows: &Tensor) -> Result<Tensor> {
        let recon = |sae: &Sae| -> Result<Tensor> { Ok(sae.decode(&sae.encode(rows)?)?) };
        Ok(match self {
            Edit::Zero => rows.zeros_like()?,
            Edit::Splice(sae) => recon(sae)?,
            Edit::Noise(sae, seed) => {
                let err_norm = (rows - recon(sae)?)?.sqr()?.sum_keepdim(1)?.sqrt()?;
                let (n, d) = rows.dims2()?;
                let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
                let g: Vec<f32> = (0..n * d)
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect();
                let g = Tensor::from_vec(g, (n, d), &Device::Cpu)?;
                let unit = g.broadcast_div(&g.sqr()?.sum_keepdim(1)?.sqrt()?)?;
                (rows + unit.broadcast_mul(&err_norm)?)?
            }
        })
    }
}

/// The scores of one window: the clean run (capturing the residual to classify the report
/// tokens), then each edit at the kept tokens. Every run feeds the window's report tokens
/// after the prefix's unedited keys and values.
fn score_window(
    model: &HookedLlama,
    windower: &Windower,
    sae: &Arc<Sae>,
    filter: &TokenFilter,
    point: HookPoint,
    w: &Window,
) -> Result<Sums> {
    let content = w.content();
    let mut hooks = Hooks::new();
    hooks.capture(point);
    let clean = model.forward(content, &mut windower.prefix_cache().clone(), &mut hooks)?;
    let resid = hooks
        .store()
        .get(point)?
        .ok_or_else(|| InterpError::invalid(format!("no activation captured at {point}")))?;
    let positions: Vec<u32> = (0..content.len())
        .map(|j| (w.first_position + j) as u32)
        .collect();
    let classes = filter.classes(&resid, &positions)?;
    let keep: Vec<f32> = classes
        .iter()
        .map(|&c| if c == TokenClass::Kept { 1.0 } else { 0.0 })
        .collect();
    let keep = Tensor::from_vec(keep, (classes.len(), 1), &Device::Cpu)?;
    let seed = window_seed(&w.ids, w.first_position);
    let mut logits = vec![clean];
    for edit in [
        Edit::Splice(sae.clone()),
        Edit::Noise(sae.clone(), seed),
        Edit::Zero,
    ] {
        let mut cache = windower.prefix_cache().clone();
        logits.push(run(model, &mut cache, content, point, edit, keep.clone())?);
    }
    let mut sums = score(&logits, content, w.first_position)?;
    classes.iter().for_each(|&c| sums.counts.add(c));
    Ok(sums)
}

/// A seed that depends on the window only (not on which worker runs it): FNV-1a of its ids.
fn window_seed(ids: &[u32], first_position: usize) -> u64 {
    ids.iter()
        .chain(std::iter::once(&(first_position as u32)))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &v| {
            (h ^ v as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Logits `(tokens, vocab)` of `ids` after the sequence in `cache`, with `edit` applied to
/// the rows where `keep` (1 or 0 per row) is 1.
fn run(
    model: &HookedLlama,
    cache: &mut KvCache,
    ids: &[u32],
    point: HookPoint,
    edit: Edit,
    keep: Tensor,
) -> Result<Tensor> {
    let mut hooks = Hooks::new();
    hooks.replace(point, move |_, rows| {
        let new = edit
            .apply(rows)
            .map_err(|e| candle_core::Error::Msg(format!("SAE splice: {e}")))?;
        rows.broadcast_mul(&(1.0 - &keep)?)? + new.broadcast_mul(&keep)?
    });
    Ok(model.forward(ids, cache, &mut hooks)?)
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

/// Next-token cross-entropies (nats) of the predictions at positions `from..len-1` of
/// `logits` (targets `ids[p + 1]`).
pub fn next_token_losses(logits: &Tensor, ids: &[u32], from: usize) -> Result<Vec<f64>> {
    let lp = log_probs(logits)?;
    Ok((from..ids.len().saturating_sub(1))
        .map(|p| -lp[p][ids[p + 1] as usize])
        .collect())
}

/// KL(p || q) of two log-probability rows.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// The sums of the predictions at every position but the last of `ids` (targets
/// `ids[p + 1]`), from the runs' logits (clean first); `ids[0]` is at report position
/// `first_position`.
fn score(logits: &[Tensor], ids: &[u32], first_position: usize) -> Result<Sums> {
    let mut sums = Sums::default();
    let lps = logits.iter().map(log_probs).collect::<Result<Vec<_>>>()?;
    for p in 0..ids.len() - 1 {
        let target = ids[p + 1] as usize;
        let bucket = position_bucket((first_position + p) as u32);
        for (r, lp) in lps.iter().enumerate() {
            let v = -lp[p][target];
            if !v.is_finite() {
                return Err(InterpError::invalid(format!(
                    "non-finite cross-entropy at report position {}",
                    first_position + p
                )));
            }
            sums.ce[r] += v;
            sums.bucket_ce[bucket][r] += v;
            if r != CLEAN {
                sums.kl[r] += kl(&lps[CLEAN][p], &lp[p]);
            }
        }
        sums.bucket_tokens[bucket] += 1;
        sums.tokens += 1;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_sae::SaeConfig;

    #[test]
    fn noise_has_the_norm_of_the_sae_error_per_token() {
        let sae = Arc::new(Sae::new(SaeConfig::matryoshka(8, 64, 2).unwrap(), 3).unwrap());
        let rows = Tensor::randn(0f32, 1.0, (5, 8), &Device::Cpu).unwrap();
        let norms = |t: &Tensor| -> Vec<f32> {
            t.sqr()
                .unwrap()
                .sum(1)
                .unwrap()
                .sqrt()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let recon = Edit::Splice(sae.clone()).apply(&rows).unwrap();
        let noised = Edit::Noise(sae.clone(), 9).apply(&rows).unwrap();
        let want = norms(&(&rows - &recon).unwrap());
        let got = norms(&(&noised - &rows).unwrap());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4 * w.max(1.0), "{got:?} vs {want:?}");
        }
        // Seeded: the same seed gives the same noise, another seed other noise.
        let again = Edit::Noise(sae.clone(), 9).apply(&rows).unwrap();
        assert_eq!(
            again.to_vec2::<f32>().unwrap(),
            noised.to_vec2::<f32>().unwrap()
        );
        let other = Edit::Noise(sae, 10).apply(&rows).unwrap();
        assert_ne!(
            other.to_vec2::<f32>().unwrap(),
            noised.to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn delta_intervals_resample_whole_reports() {
        let report = |tokens, clean, spliced| ReportLoss {
            tokens,
            ce: [clean, spliced, clean, clean],
        };
        // Deltas per prediction 0.5 (two predictions) and 0: with two reports a quarter of
        // the resamples hold only one of them, so the interval runs from one to the other.
        let two = [report(2, 2.0, 3.0), report(1, 1.0, 1.0)];
        assert_eq!(delta_ci(&two, SPLICED), (0.0, 0.5));
        assert_eq!(delta_ci(&two, NOISE), (0.0, 0.0));
    }

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

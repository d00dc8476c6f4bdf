//! Evaluation metrics: fraction of variance unexplained (on the tokens a [`TokenFilter`]
//! keeps and on all tokens, overall, per Matryoshka prefix and per report position), L0,
//! dead and dense latent fractions.
//!
//! FVU is `sum ||x - x_hat||^2 / sum ||x - mean||^2` with one global mean over every token
//! evaluated (not a mean per batch, which would shrink the denominator).

use crate::sae::Sae;
use crate::store::ActivationStore;
use crate::tokens::{TokenClass, TokenCounts, TokenFilter};
use crate::Result;
use candle_core::{DType, Tensor};
use radlens_core::observe::Count;
use radlens_core::Observer;
use serde::{Deserialize, Serialize};

/// A latent is dense if it fires on more than this fraction of tokens.
pub const DENSE_FIRING_FRACTION: f64 = 0.1;

/// First report positions of the per-position breakdown's buckets (the last is open).
pub const POSITION_BUCKETS: [u32; 9] = [0, 1, 2, 4, 8, 16, 32, 64, 128];

/// Fraction of variance unexplained of one batch: `sum ||x - x_hat||^2 / sum ||x -
/// mean(x)||^2`.
pub fn fvu(x: &Tensor, x_hat: &Tensor) -> Result<f64> {
    let mut m = Moments::new(x.dims2()?.1);
    m.add_rows(&to_rows(x)?, |_| true);
    let err: f64 = squared_errors(x, x_hat)?.iter().sum();
    Ok(err / m.centred(&m.mean()))
}

/// A batch of raw activations with each row's report position.
#[derive(Clone, Debug)]
pub struct PositionedBatch {
    pub x: Tensor,
    pub positions: Vec<u32>,
}

/// FVU of the tokens at some report positions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionMetrics {
    pub first_position: u32,
    /// Last position of the bucket; `None` for the open last bucket.
    pub last_position: Option<u32>,
    pub tokens: usize,
    /// Tokens of the bucket the filter excludes.
    pub excluded: usize,
    /// The bucket's squared error over its variance about the all-token mean.
    pub fvu: f64,
    /// The bucket's share of the all-token squared error and centred variance.
    pub share_of_error: f64,
    pub share_of_variance: f64,
}

/// Inference metrics of an SAE over some batches of raw activations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// FVU of the full reconstruction on the tokens the filter keeps.
    pub fvu: f64,
    /// FVU of the full reconstruction on every token (the SAE applied to all).
    pub fvu_all_tokens: f64,
    /// FVU of each Matryoshka prefix on the kept tokens (the last equals `fvu`).
    pub fvu_per_prefix: Vec<f64>,
    /// Mean number of active latents per kept token.
    pub l0: f64,
    /// Fraction of latents that never fired on a kept token.
    pub dead_fraction: f64,
    /// Fraction of latents firing on more than [`DENSE_FIRING_FRACTION`] of kept tokens.
    pub dense_fraction: f64,
    /// Tokens evaluated, kept and excluded.
    pub tokens: usize,
    pub token_filter: TokenFilter,
    pub token_counts: TokenCounts,
    /// Share of the all-token centred variance held by the excluded tokens.
    pub excluded_share_of_variance: f64,
    pub per_position: Vec<PositionMetrics>,
}

/// Running sums for a global-mean variance: count, per-dimension sum, sum of squares.
#[derive(Clone, Debug)]
struct Moments {
    n: usize,
    sum: Vec<f64>,
    sum_sq: f64,
}

impl Moments {
    fn new(d: usize) -> Self {
        Self {
            n: 0,
            sum: vec![0.0; d],
            sum_sq: 0.0,
        }
    }

    /// Adds the rows `i` for which `take(i)` holds.
    fn add_rows(&mut self, rows: &[Vec<f64>], take: impl Fn(usize) -> bool) {
        for (_, r) in rows.iter().enumerate().filter(|(i, _)| take(*i)) {
            self.n += 1;
            self.sum.iter_mut().zip(r).for_each(|(s, v)| *s += v);
            self.sum_sq += r.iter().map(|v| v * v).sum::<f64>();
        }
    }

    fn mean(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }

    /// `sum ||x - mean||^2` over the rows added.
    fn centred(&self, mean: &[f64]) -> f64 {
        let dot: f64 = self.sum.iter().zip(mean).map(|(s, m)| s * m).sum();
        let mm: f64 = mean.iter().map(|m| m * m).sum();
        self.sum_sq - 2.0 * dot + self.n as f64 * mm
    }
}

fn to_rows(x: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(x.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// `||x_i - x_hat_i||^2` per row.
fn squared_errors(x: &Tensor, x_hat: &Tensor) -> Result<Vec<f64>> {
    Ok((x.to_dtype(DType::F64)? - x_hat.to_dtype(DType::F64)?)?
        .sqr()?
        .sum(1)?
        .to_vec1::<f64>()?)
}

/// The index in [`POSITION_BUCKETS`] of the bucket holding `position`.
pub fn position_bucket(position: u32) -> usize {
    POSITION_BUCKETS.partition_point(|&b| b <= position) - 1
}

/// Evaluates `sae` with its inference encoder on batches of raw activations, keeping the
/// tokens `filter` keeps for the headline numbers.
pub fn evaluate<I>(sae: &Sae, filter: &TokenFilter, batches: I) -> Result<Metrics>
where
    I: IntoIterator<Item = Result<PositionedBatch>>,
{
    let (f, d) = (sae.config().d_sae, sae.config().d_in);
    let groups = sae.config().group_sizes.len();
    let nb = POSITION_BUCKETS.len();
    let mut prefix_err = vec![0f64; groups];
    let mut err_all = 0f64;
    let (mut kept, mut all) = (Moments::new(d), Moments::new(d));
    let mut buckets = vec![Moments::new(d); nb];
    let (mut bucket_err, mut bucket_excluded) = (vec![0f64; nb], vec![0usize; nb]);
    let mut excluded = Moments::new(d);
    let mut counts = TokenCounts::default();
    let mut active = 0usize;
    let mut fires = vec![0usize; f];
    for batch in batches {
        let PositionedBatch { x, positions } = batch?;
        let classes = filter.classes(&x, &positions)?;
        let is_kept = |i: usize| classes[i] == TokenClass::Kept;
        classes.iter().for_each(|&c| counts.add(c));
        let codes = sae.encode(&x)?;
        let values = codes.values.to_vec1::<f32>()?;
        let entries = codes
            .index
            .entry_rows()
            .iter()
            .zip(codes.index.entry_cols());
        for ((&r, &c), &v) in entries.zip(&values) {
            if v > 0.0 && is_kept(r as usize) {
                fires[c as usize] += 1;
                active += 1;
            }
        }
        let prefixes = sae.decode_prefixes(&codes)?;
        for (g, x_hat) in prefixes.iter().enumerate() {
            let e = squared_errors(&x, x_hat)?;
            prefix_err[g] += (0..e.len())
                .filter(|&i| is_kept(i))
                .map(|i| e[i])
                .sum::<f64>();
            if g + 1 == groups {
                err_all += e.iter().sum::<f64>();
                for (i, &p) in positions.iter().enumerate() {
                    bucket_err[position_bucket(p)] += e[i];
                }
            }
        }
        let rows = to_rows(&x)?;
        kept.add_rows(&rows, is_kept);
        excluded.add_rows(&rows, |i| !is_kept(i));
        all.add_rows(&rows, |_| true);
        for (b, m) in buckets.iter_mut().enumerate() {
            m.add_rows(&rows, |i| position_bucket(positions[i]) == b);
        }
        for (i, &p) in positions.iter().enumerate() {
            if !is_kept(i) {
                bucket_excluded[position_bucket(p)] += 1;
            }
        }
    }
    let kept_var = kept.centred(&kept.mean());
    let all_mean = all.mean();
    let all_var = all.centred(&all_mean);
    let fvu_per_prefix: Vec<f64> = prefix_err.iter().map(|e| e / kept_var).collect();
    let per_position = (0..nb)
        .filter(|&b| buckets[b].n > 0)
        .map(|b| {
            let var = buckets[b].centred(&all_mean);
            PositionMetrics {
                first_position: POSITION_BUCKETS[b],
                last_position: POSITION_BUCKETS.get(b + 1).map(|n| n - 1),
                tokens: buckets[b].n,
                excluded: bucket_excluded[b],
                fvu: bucket_err[b] / var,
                share_of_error: bucket_err[b] / err_all,
                share_of_variance: var / all_var,
            }
        })
        .collect();
    let n_kept = counts.kept;
    let frac = |n: usize| n as f64 / f as f64;
    Ok(Metrics {
        fvu: fvu_per_prefix.last().copied().unwrap_or(f64::NAN),
        fvu_all_tokens: err_all / all_var,
        fvu_per_prefix,
        l0: active as f64 / n_kept.max(1) as f64,
        dead_fraction: frac(fires.iter().filter(|&&n| n == 0).count()),
        dense_fraction: frac(
            fires
                .iter()
                .filter(|&&n| n as f64 > DENSE_FIRING_FRACTION * n_kept as f64)
                .count(),
        ),
        tokens: counts.total(),
        token_filter: *filter,
        token_counts: counts,
        excluded_share_of_variance: excluded.centred(&all_mean) / all_var,
        per_position,
    })
}

/// Evaluates `sae` on every row of `store` (which must hold token records), one shard at
/// a time, reporting the rows done after each shard.
pub fn evaluate_store(
    sae: &Sae,
    store: &ActivationStore,
    filter: &TokenFilter,
    observer: &dyn Observer<Count>,
) -> Result<Metrics> {
    store.check_reader(sae)?;
    let total = store.rows() as u64;
    let mut done = 0;
    evaluate(
        sae,
        filter,
        (0..store.shards().len()).map(|i| {
            let (x, records) = store.read_shard_with_tokens(i)?;
            done += records.len() as u64;
            observer.observe(&Count { done, total });
            Ok(PositionedBatch {
                x,
                positions: records.iter().map(|r| r.position).collect(),
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SaeConfig;
    use crate::tokens::{kept_rows, TokenPolicy};
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    #[test]
    fn filtered_and_all_token_fvu_match_single_batch_fvu_over_two_batches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut data: Vec<f32> = (0..40 * 8).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // Row 7 is a sink: 50x the others' norm, at a kept position.
        data[7 * 8..8 * 8].iter_mut().for_each(|v| *v *= 50.0);
        let x = Tensor::from_vec(data, (40, 8), &Device::Cpu).unwrap();
        let positions: Vec<u32> = (0..40).map(|i| i % 20).collect();
        let sae = Sae::new(SaeConfig::matryoshka(8, 64, 3).unwrap(), 1).unwrap();
        let filter = TokenFilter {
            policy: TokenPolicy::default(),
            median_norm: 1.6,
        };
        let batches = [(0, 25), (25, 15)].map(|(s, n)| {
            Ok(PositionedBatch {
                x: x.narrow(0, s, n).unwrap(),
                positions: positions[s..s + n].to_vec(),
            })
        });
        let m = evaluate(&sae, &filter, batches).unwrap();
        // BatchTopK codes depend on the batch, so the reference reconstructs batch by batch
        // too; what is checked is that the FVU is one global mean, not a mean of batch FVUs.
        let recon = |s: usize, n: usize| {
            let xb = x.narrow(0, s, n).unwrap();
            sae.decode(&sae.encode(&xb).unwrap()).unwrap()
        };
        let recon = Tensor::cat(&[recon(0, 25), recon(25, 15)], 0).unwrap();
        let classes = filter.classes(&x, &positions).unwrap();
        let kept = kept_rows(&x, &classes).unwrap();
        let kept_recon = kept_rows(&recon, &classes).unwrap();
        assert!((m.fvu_all_tokens - fvu(&x, &recon).unwrap()).abs() < 1e-6);
        assert!((m.fvu - fvu(&kept, &kept_recon).unwrap()).abs() < 1e-6);
        assert_eq!(m.token_counts.early_position, 4);
        assert_eq!(m.token_counts.large_norm, 1);
        assert_eq!(m.token_counts.kept, 35);
        assert!(m.excluded_share_of_variance > 0.5, "{m:?}");
        let shares: f64 = m.per_position.iter().map(|p| p.share_of_error).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        let vars: f64 = m.per_position.iter().map(|p| p.share_of_variance).sum();
        assert!((vars - 1.0).abs() < 1e-9);
        assert_eq!(m.per_position[0].excluded, 2);
        assert_eq!(m.per_position.iter().map(|p| p.tokens).sum::<usize>(), 40);
    }

    #[test]
    fn moments_give_the_centred_sum_of_squares() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 6.0], vec![5.0, 1.0]];
        let mut m = Moments::new(2);
        m.add_rows(&rows, |_| true);
        // Mean (3, 3): (4 + 1) + (0 + 9) + (4 + 4) = 22.
        assert!((m.centred(&m.mean()) - 22.0).abs() < 1e-12);
        assert_eq!(position_bucket(0), 0);
        assert_eq!(position_bucket(3), 2);
        assert_eq!(position_bucket(1000), POSITION_BUCKETS.len() - 1);
    }
}

//! Evaluation metrics: fraction of variance unexplained (overall and per Matryoshka
//! prefix), L0, dead and dense latent fractions.

use crate::sae::Sae;
use crate::store::ActivationStore;
use crate::Result;
use candle_core::{DType, Tensor};
use radlens_core::observe::Count;
use radlens_core::Observer;
use serde::{Deserialize, Serialize};

/// A latent is dense if it fires on more than this fraction of tokens.
pub const DENSE_FIRING_FRACTION: f64 = 0.1;

/// Fraction of variance unexplained: `sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`.
pub fn fvu(x: &Tensor, x_hat: &Tensor) -> Result<f64> {
    let (err, var) = sums(x, x_hat)?;
    Ok(err / var)
}

/// Squared error and total variance sums of a batch.
fn sums(x: &Tensor, x_hat: &Tensor) -> Result<(f64, f64)> {
    let x = x.to_dtype(DType::F64)?;
    let err = (&x - x_hat.to_dtype(DType::F64)?)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?;
    let var = x
        .broadcast_sub(&x.mean_keepdim(0)?)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok((err, var))
}

/// Inference metrics of an SAE over some batches of raw activations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// FVU of the full reconstruction (variance taken per batch, errors pooled).
    pub fvu: f64,
    /// FVU of each Matryoshka prefix (the last equals `fvu`).
    pub fvu_per_prefix: Vec<f64>,
    /// Mean number of active latents per token.
    pub l0: f64,
    /// Fraction of latents that never fired.
    pub dead_fraction: f64,
    /// Fraction of latents firing on more than [`DENSE_FIRING_FRACTION`] of tokens.
    pub dense_fraction: f64,
    pub tokens: usize,
}

/// Evaluates `sae` on batches of raw activations with its inference encoder.
pub fn evaluate<I>(sae: &Sae, batches: I) -> Result<Metrics>
where
    I: IntoIterator<Item = Result<Tensor>>,
{
    let f = sae.config().d_sae;
    let groups = sae.config().group_sizes.len();
    let (mut err, mut var) = (vec![0f64; groups], 0f64);
    let (mut tokens, mut active) = (0usize, 0usize);
    let mut fires = vec![0usize; f];
    for batch in batches {
        let x = batch?;
        let codes = sae.encode(&x)?;
        let values = codes.values.to_vec1::<f32>()?;
        for (&c, &v) in codes.index.entry_cols().iter().zip(&values) {
            if v > 0.0 {
                fires[c as usize] += 1;
                active += 1;
            }
        }
        for (g, x_hat) in sae.decode_prefixes(&codes)?.iter().enumerate() {
            let (e, v) = sums(&x, x_hat)?;
            err[g] += e;
            if g == 0 {
                var += v;
            }
        }
        tokens += x.dims2()?.0;
    }
    let fvu_per_prefix: Vec<f64> = err.iter().map(|e| e / var).collect();
    let frac = |n: usize| n as f64 / f as f64;
    Ok(Metrics {
        fvu: fvu_per_prefix.last().copied().unwrap_or(f64::NAN),
        fvu_per_prefix,
        l0: active as f64 / tokens.max(1) as f64,
        dead_fraction: frac(fires.iter().filter(|&&n| n == 0).count()),
        dense_fraction: frac(
            fires
                .iter()
                .filter(|&&n| n as f64 > DENSE_FIRING_FRACTION * tokens as f64)
                .count(),
        ),
        tokens,
    })
}

/// Evaluates `sae` on every row of `store`, `batch` rows at a time, reporting the rows
/// done after each batch.
pub fn evaluate_store(
    sae: &Sae,
    store: &ActivationStore,
    batch: usize,
    observer: &dyn Observer<Count>,
) -> Result<Metrics> {
    store.check_reader(sae)?;
    let total = store.rows() as u64;
    let mut done = 0;
    evaluate(
        sae,
        store.batches(batch).inspect(|b| {
            if let Ok(b) = b {
                done += b.dims()[0] as u64;
                observer.observe(&Count { done, total });
            }
        }),
    )
}

//! Which tokens an SAE is trained on, measured on and spliced at.
//!
//! A few tokens per report (the report's first tokens; attention sinks) carry residual
//! norms tens of times the median. Left in, they dominate the squared error, the variance
//! that FVU divides by and the activation scale. The policy excludes them by position and
//! by norm; the same [`TokenFilter`] (its median fitted once, on the training store) is
//! applied in training, in FVU and in the spliced language-model loss, and every exclusion
//! is counted.

use crate::store::ActivationStore;
use crate::{Result, SaeError};
use candle_core::{DType, Tensor};
use radlens_core::results::{read_json, write_json};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in an SAE directory that holds the filter it was trained with.
pub const FILTER_FILE: &str = "token_filter.json";

/// The exclusion rule, before it is fitted to data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenPolicy {
    /// Tokens at report positions below this (from 0) are excluded.
    pub min_position: u32,
    /// Tokens whose residual norm exceeds this multiple of the median norm (of tokens at
    /// kept positions) are excluded; `None` keeps every norm.
    pub max_norm_ratio: Option<f64>,
}

impl Default for TokenPolicy {
    /// Excludes report positions 0 and 1 and norms above 5x the median.
    fn default() -> Self {
        Self {
            min_position: 2,
            max_norm_ratio: Some(5.0),
        }
    }
}

impl TokenPolicy {
    /// Keeps every token.
    pub fn keep_all() -> Self {
        Self {
            min_position: 0,
            max_norm_ratio: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self.max_norm_ratio {
            Some(r) if !(r.is_finite() && r > 0.0) => Err(SaeError::Config(format!(
                "the norm ratio {r} must be a positive number"
            ))),
            _ => Ok(()),
        }
    }
}

/// Why a token is kept or excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenClass {
    Kept,
    EarlyPosition,
    LargeNorm,
}

/// A policy with the median norm it is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenFilter {
    pub policy: TokenPolicy,
    /// Median residual norm (raw units) of the tokens at kept positions of the store the
    /// filter was fitted on.
    pub median_norm: f64,
}

impl TokenFilter {
    /// The class of a token at report `position` with residual norm `norm` (raw units).
    pub fn class(&self, position: u32, norm: f64) -> TokenClass {
        if position < self.policy.min_position {
            TokenClass::EarlyPosition
        } else if self
            .policy
            .max_norm_ratio
            .is_some_and(|r| norm > r * self.median_norm)
        {
            TokenClass::LargeNorm
        } else {
            TokenClass::Kept
        }
    }

    /// The classes of the rows of `x` (n, d) at `positions`.
    pub fn classes(&self, x: &Tensor, positions: &[u32]) -> Result<Vec<TokenClass>> {
        Ok(row_norms(x)?
            .into_iter()
            .zip(positions)
            .map(|(n, &p)| self.class(p, n))
            .collect())
    }

    /// The filter saved in SAE directory `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(FILTER_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json(&path)?))
    }

    /// Saves the filter into SAE directory `dir` (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        Ok(write_json(&dir.join(FILTER_FILE), self)?)
    }
}

/// How many tokens a filter kept and excluded, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub kept: usize,
    /// Excluded for their position.
    pub early_position: usize,
    /// Excluded for their norm (at a kept position).
    pub large_norm: usize,
}

impl TokenCounts {
    pub fn add(&mut self, class: TokenClass) {
        match class {
            TokenClass::Kept => self.kept += 1,
            TokenClass::EarlyPosition => self.early_position += 1,
            TokenClass::LargeNorm => self.large_norm += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.kept + self.early_position + self.large_norm
    }
}

/// A filter fitted to a store, with what it keeps there and the kept rows' mean squared
/// norm (for the activation scale).
#[derive(Clone, Debug, PartialEq)]
pub struct FittedFilter {
    pub filter: TokenFilter,
    pub counts: TokenCounts,
    pub kept_mean_squared_norm: f64,
}

/// Fits `policy` to every row of `store` (which must hold token records): the median
/// norm over rows at kept positions, then the counts and the kept rows' mean squared norm.
pub fn fit_filter(store: &ActivationStore, policy: TokenPolicy) -> Result<FittedFilter> {
    policy.validate()?;
    let mut rows: Vec<(u32, f64)> = Vec::with_capacity(store.rows());
    for i in 0..store.shards().len() {
        let (x, records) = store.read_shard_with_tokens(i)?;
        rows.extend(records.iter().map(|r| r.position).zip(row_norms(&x)?));
    }
    let mut norms: Vec<f64> = rows
        .iter()
        .filter(|(p, _)| *p >= policy.min_position)
        .map(|&(_, n)| n)
        .collect();
    if norms.is_empty() {
        return Err(SaeError::format(
            store.dir(),
            format!(
                "no token at report position {} or later: the token policy excludes every row",
                policy.min_position
            ),
        ));
    }
    norms.sort_by(f64::total_cmp);
    let filter = TokenFilter {
        policy,
        median_norm: median_of_sorted(&norms),
    };
    let (mut counts, mut sum_sq) = (TokenCounts::default(), 0f64);
    for &(p, n) in &rows {
        let class = filter.class(p, n);
        counts.add(class);
        if class == TokenClass::Kept {
            sum_sq += n * n;
        }
    }
    Ok(FittedFilter {
        filter,
        counts,
        kept_mean_squared_norm: sum_sq / counts.kept.max(1) as f64,
    })
}

fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Euclidean norm of each row of `x` (n, d), in f64.
pub fn row_norms(x: &Tensor) -> Result<Vec<f64>> {
    Ok(x.to_dtype(DType::F64)?
        .sqr()?
        .sum(1)?
        .sqrt()?
        .to_vec1::<f64>()?)
}

/// The rows of `x` whose class is [`TokenClass::Kept`].
pub fn kept_rows(x: &Tensor, classes: &[TokenClass]) -> Result<Tensor> {
    let idx: Vec<u32> = classes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == TokenClass::Kept)
        .map(|(i, _)| i as u32)
        .collect();
    let n = idx.len();
    Ok(x.index_select(&Tensor::from_vec(idx, n, x.device())?, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_position_then_norm() {
        let f = TokenFilter {
            policy: TokenPolicy::default(),
            median_norm: 2.0,
        };
        assert_eq!(f.class(0, 1.0), TokenClass::EarlyPosition);
        assert_eq!(f.class(1, 100.0), TokenClass::EarlyPosition);
        assert_eq!(f.class(2, 10.0), TokenClass::Kept); // exactly 5x is kept
        assert_eq!(f.class(2, 10.01), TokenClass::LargeNorm);
        let all = TokenFilter {
            policy: TokenPolicy::keep_all(),
            median_norm: 2.0,
        };
        assert_eq!(all.class(0, 1e9), TokenClass::Kept);
        assert!(TokenPolicy {
            min_position: 0,
            max_norm_ratio: Some(0.0)
        }
        .validate()
        .is_err());
    }

    #[test]
    fn row_norms_and_kept_rows_match_hand_values() {
        let x = Tensor::new(
            &[[3f32, 4.0], [0.0, 1.0], [6.0, 8.0]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert_eq!(row_norms(&x).unwrap(), [5.0, 1.0, 10.0]);
        let f = TokenFilter {
            policy: TokenPolicy {
                min_position: 1,
                max_norm_ratio: Some(2.0),
            },
            median_norm: 4.0,
        };
        let classes = f.classes(&x, &[0, 1, 2]).unwrap();
        assert_eq!(
            classes,
            [
                TokenClass::EarlyPosition,
                TokenClass::Kept,
                TokenClass::LargeNorm
            ]
        );
        let kept = kept_rows(&x, &classes).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(kept, [[0.0, 1.0]]);
    }
}

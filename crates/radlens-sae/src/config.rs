//! SAE configuration: widths, sparsity rule and Matryoshka groups.

use crate::{Result, SaeError};
use serde::{Deserialize, Serialize};

/// The Matryoshka group fractions of the dictionary_learning demo; the remainder goes to
/// the last group.
pub const DEFAULT_GROUP_FRACTIONS: [f64; 5] =
    [1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 17.0 / 32.0];

/// How latent codes are selected from the pre-activations `relu((x - b_dec) W_enc + b_enc)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    /// Keep the `k * batch` largest pre-activations of the whole batch; at inference keep
    /// those above the learnt global threshold.
    BatchTopK { k: usize },
    /// Keep the `k` largest pre-activations of each token.
    TopK { k: usize },
    /// Keep every positive pre-activation; the loss adds `l1_coefficient` x the mean over
    /// tokens of the codes' L1 norm (decoder rows are unit norm, so no norm weighting).
    Relu { l1_coefficient: f32 },
}

/// Shape and sparsity rule of an SAE. A single group is a plain (non-Matryoshka) SAE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// Input (residual stream) width d.
    pub d_in: usize,
    /// Dictionary size F.
    pub d_sae: usize,
    pub activation: Activation,
    /// Sizes of the nested Matryoshka groups, summing to `d_sae`.
    pub group_sizes: Vec<usize>,
}

impl SaeConfig {
    /// Matryoshka BatchTopK with the default group fractions.
    pub fn matryoshka(d_in: usize, d_sae: usize, k: usize) -> Result<Self> {
        Self::new(
            d_in,
            d_sae,
            Activation::BatchTopK { k },
            group_sizes(d_sae, &DEFAULT_GROUP_FRACTIONS)?,
        )
    }

    /// A single-group SAE with the given sparsity rule.
    pub fn plain(d_in: usize, d_sae: usize, activation: Activation) -> Result<Self> {
        Self::new(d_in, d_sae, activation, vec![d_sae])
    }

    /// Checks and builds a configuration.
    pub fn new(
        d_in: usize,
        d_sae: usize,
        activation: Activation,
        group_sizes: Vec<usize>,
    ) -> Result<Self> {
        let cfg = Self {
            d_in,
            d_sae,
            activation,
            group_sizes,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SaeError::Config(m));
        if self.d_in == 0 || self.d_sae == 0 {
            return bad(format!(
                "widths must be positive (d_in {}, d_sae {})",
                self.d_in, self.d_sae
            ));
        }
        if self.group_sizes.iter().sum::<usize>() != self.d_sae || self.group_sizes.contains(&0) {
            return bad(format!(
                "group sizes {:?} must be positive and sum to d_sae {}",
                self.group_sizes, self.d_sae
            ));
        }
        match self.activation {
            Activation::BatchTopK { k } | Activation::TopK { k } if k == 0 || k > self.d_sae => {
                bad(format!("k = {k} must be in 1..={}", self.d_sae))
            }
            Activation::Relu { l1_coefficient }
                if l1_coefficient.is_nan() || l1_coefficient < 0.0 =>
            {
                bad(format!("l1_coefficient {l1_coefficient} must be >= 0"))
            }
            _ => Ok(()),
        }
    }

    /// Column ranges of the groups, in order.
    pub fn group_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut start = 0;
        self.group_sizes
            .iter()
            .map(|&g| {
                start += g;
                start - g..start
            })
            .collect()
    }
}

/// Group sizes `floor(f * d_sae)` for each fraction, with the remainder added to the last.
pub fn group_sizes(d_sae: usize, fractions: &[f64]) -> Result<Vec<usize>> {
    if fractions.is_empty()
        || fractions.iter().any(|f| f.is_nan() || *f <= 0.0)
        || fractions.iter().sum::<f64>() > 1.0 + 1e-9
    {
        return Err(SaeError::Config(format!(
            "group fractions {fractions:?} must be positive and sum to at most 1"
        )));
    }
    let mut sizes: Vec<usize> = fractions
        .iter()
        .map(|f| (f * d_sae as f64) as usize)
        .collect();
    let used: usize = sizes.iter().sum();
    if let Some(last) = sizes.last_mut() {
        *last += d_sae - used;
    }
    Ok(sizes)
}

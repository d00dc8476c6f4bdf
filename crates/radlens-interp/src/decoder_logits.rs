//! A feature's decoder direction read through the model's unembedding (the logit lens of
//! Bricken et al. 2023, as Neuronpedia shows it): the tokens the direction promotes and
//! suppresses most when the feature fires.

use crate::steer::HookedSae;
use crate::Result;
use radlens_lm::LanguageModel;
use serde::{Deserialize, Serialize};

/// One token and the logit the feature's direction gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogit {
    pub token_id: u32,
    /// The token's text as decoded (leading spaces kept).
    pub token: String,
    pub logit: f64,
}

/// The largest and smallest logits of a decoder direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderLogits {
    /// Highest first.
    pub top: Vec<TokenLogit>,
    /// Lowest first.
    pub bottom: Vec<TokenLogit>,
}

/// The `k` highest and `k` lowest logits of `feature`'s decoder direction (in raw residual
/// units: the logit change per unit of activation, before the final norm's RMS scaling).
pub fn decoder_logits(
    lm: &LanguageModel,
    sae: &HookedSae,
    feature: usize,
    k: usize,
) -> Result<DecoderLogits> {
    let direction = sae.direction(feature)?.unsqueeze(0)?;
    let logits: Vec<f32> = lm
        .model
        .unembed_directions(&direction)?
        .squeeze(0)?
        .to_vec1()?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let k = k.min(order.len());
    let token = |i: usize| -> Result<TokenLogit> {
        let id = i as u32;
        Ok(TokenLogit {
            token_id: id,
            token: lm.tokenizer.decode(&[id], false)?,
            logit: f64::from(logits[i]),
        })
    };
    Ok(DecoderLogits {
        top: order[..k]
            .iter()
            .map(|&i| token(i))
            .collect::<Result<_>>()?,
        bottom: order[order.len() - k..]
            .iter()
            .rev()
            .map(|&i| token(i))
            .collect::<Result<_>>()?,
    })
}

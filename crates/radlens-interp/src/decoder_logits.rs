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

/// A feature and the mean logit its decoder direction gives some tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureLogit {
    pub feature: usize,
    pub logit: f64,
}

/// Decoder rows read through the unembedding at a time (a chunk's logits are rows x vocab).
const CHUNK: usize = 256;

/// The `k` features whose decoder directions raise the logits of `tokens` most (mean over
/// the tokens, in the units of [`decoder_logits`]), highest first: the features that write
/// those tokens, and so the candidates for steering the model towards them. Features that
/// merely fire on a word (when reading it) need not make the model write it.
pub fn features_promoting(
    lm: &LanguageModel,
    sae: &HookedSae,
    tokens: &[u32],
    k: usize,
) -> Result<Vec<FeatureLogit>> {
    let vocab = lm.tokenizer.vocab_size();
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(crate::InterpError::invalid(format!(
            "token {t} is outside the model's vocabulary of {vocab}"
        )));
    }
    if tokens.is_empty() {
        return Err(crate::InterpError::invalid("no tokens to promote"));
    }
    let ids = candle_core::Tensor::new(tokens, sae.sae.w_dec().device())?;
    let n = sae.sae.config().d_sae;
    let mut scores = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let rows = CHUNK.min(n - start);
        let logits = lm
            .model
            .unembed_directions(&sae.directions(start, rows)?)?
            .index_select(&ids, 1)?;
        let mean: Vec<f32> = logits.mean(1)?.to_vec1()?;
        scores.extend(mean.into_iter().enumerate().map(|(i, l)| FeatureLogit {
            feature: start + i,
            logit: f64::from(l),
        }));
    }
    scores.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.feature.cmp(&b.feature)));
    scores.truncate(k);
    Ok(scores)
}

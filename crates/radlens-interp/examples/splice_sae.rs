//! Hook the language model and splice a sparse autoencoder into its residual stream, using
//! the libraries alone (no CLI):
//!
//! ```sh
//! cargo run --release -p radlens-interp --example splice_sae -- \
//!     ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf
//! ```
//!
//! It reads the residual stream after block 6 over a few report sentences, trains a small
//! TopK SAE on those activations for 200 steps (a toy: real SAEs train on a harvested
//! store, see `radlens sae harvest`/`train`), then scores a held-out sentence three ways:
//! clean, with the SAE's reconstruction spliced in at block 6, and with the block's output
//! zeroed. A useful SAE keeps the spliced loss near the clean one.

use candle_core::{DType, Device, Tensor};
use radlens_lm::{HookPoint, Hooks, LanguageModel, WeightFormat};
use radlens_sae::{Activation, AdamConfig, Sae, SaeConfig, TrainConfig, Trainer};
use std::sync::Arc;

const LAYER: usize = 6;
const TRAIN_TEXTS: [&str; 6] = [
    "The heart is normal in size. The mediastinum is unremarkable.",
    "The lungs are clear without focal consolidation, effusion or pneumothorax.",
    "Stable cardiomegaly. No acute cardiopulmonary abnormality.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Degenerative changes of the thoracic spine. No displaced rib fracture.",
    "Right upper lobe opacity concerning for pneumonia.",
];
const HELD_OUT: &str = "The lungs are clear. Heart size is normal. No pleural effusion.";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let lm = LanguageModel::load(&path, &Device::Cpu, WeightFormat::F32)?;
    let point = HookPoint::ResidPost(LAYER);

    // 1. The residual stream at the hook point, one row per token.
    let mut rows = Vec::new();
    for text in TRAIN_TEXTS {
        let ids = lm.tokenizer.encode(text)?;
        rows.push(lm.model.residual_at(&ids, point, &mut Hooks::new())?);
    }
    let acts = Tensor::cat(&rows, 0)?;
    let d = acts.dim(1)?;

    // 2. A small TopK SAE (4 x d latents, 16 active per token), trained on those rows.
    let sae_cfg = SaeConfig::plain(d, 4 * d, Activation::TopK { k: 16 })?;
    let train_cfg = TrainConfig {
        adam: AdamConfig {
            lr: Some(1e-3),
            warmup_steps: 10,
            ..AdamConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(sae_cfg, train_cfg, &acts)?;
    for _ in 0..200 {
        trainer.step(&acts)?;
    }
    let sae = Arc::new(trainer.into_sae());
    println!(
        "trained an SAE of {} latents on {} tokens",
        4 * d,
        acts.dim(0)?
    );

    // 3. Next-token loss on a held-out sentence, clean / spliced / zeroed.
    let ids = lm.tokenizer.encode(HELD_OUT)?;
    let clean = next_token_loss(&lm, &ids, Hooks::new())?;
    let mut spliced = Hooks::new();
    let s = sae.clone();
    spliced.replace(point, move |_, x| reconstruct(&s, x));
    let spliced = next_token_loss(&lm, &ids, spliced)?;
    let mut zeroed = Hooks::new();
    zeroed.replace(point, |_, x| x.zeros_like());
    let zeroed = next_token_loss(&lm, &ids, zeroed)?;
    println!("next-token loss on \"{HELD_OUT}\" (nats per token):");
    println!("  clean {clean:.3}   SAE spliced at block {LAYER} {spliced:.3}   block output zeroed {zeroed:.3}");
    Ok(())
}

/// The SAE's reconstruction of the activations `x`, as a hook returns it.
fn reconstruct(sae: &Sae, x: &Tensor) -> candle_core::Result<Tensor> {
    sae.encode(x)
        .and_then(|codes| sae.decode(&codes))
        .map_err(|e| candle_core::Error::Msg(format!("SAE splice: {e}")))
}

/// Mean cross-entropy of each next token of `ids` with `hooks` active, in a fresh cache.
fn next_token_loss(
    lm: &LanguageModel,
    ids: &[u32],
    mut hooks: Hooks,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut cache = lm.model.new_cache();
    let logits = lm.model.forward(ids, &mut cache, &mut hooks)?;
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, 1)?.to_vec2::<f32>()?;
    let n = ids.len() - 1;
    let total: f64 = (0..n).map(|p| -logp[p][ids[p + 1] as usize] as f64).sum();
    Ok(total / n as f64)
}

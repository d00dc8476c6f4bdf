//! `radlens sae steer` and `steer-sweep`: generations with and without steering on one
//! feature (same prompts, same seed), the feature's activation on the generated tokens,
//! how often the steered generations mention a finding (judged by radlens-report's
//! labeller, positive mentions only, or by a keyword list), and the model's perplexity on
//! held-out text under the same steering (steering that destroys fluency is not control).

use crate::steer::HookedSae;
use crate::window::{few_shot_prompt, Windower};
use crate::{InterpError, Result};
use radlens_core::Observer;
use radlens_lm::openai::{Intervention, Steer, SteerMode};
use radlens_lm::{GenerationConfig, Hooks, LanguageModel};
use radlens_report::{Labeler, Observation, Status};
use serde::{Deserialize, Serialize};

/// One prompt answered without and with steering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteeredPair {
    pub prompt: String,
    pub baseline: String,
    pub steered: String,
    /// Mean activation of the feature over the generated tokens (on the residual as the
    /// next block sees it, i.e. after steering).
    pub baseline_activation: f64,
    pub steered_activation: f64,
}

/// Hooks that apply `steer` (none: the unsteered model) at the SAE's hook point.
fn steered_hooks(sae: &HookedSae, steer: Option<&Steer>) -> Result<Hooks> {
    let mut hooks = Hooks::new();
    if let Some(s) = steer {
        sae.register(
            &mut hooks,
            &Intervention {
                splice_sae: false,
                steer: vec![s.clone()],
            },
        )?;
    }
    Ok(hooks)
}

/// Generates a reply to the chat `prompt` (after the few-shot `examples`, if any) with
/// `steer` applied (`None`: unsteered); returns the text and the feature's mean activation
/// on the generated tokens.
pub fn generate_steered(
    lm: &LanguageModel,
    sae: &HookedSae,
    feature: usize,
    steer: Option<&Steer>,
    examples: &[String],
    prompt: &str,
    cfg: &GenerationConfig,
) -> Result<(String, f64)> {
    sae.check_feature(feature)?;
    let ids = few_shot_prompt(lm, examples, prompt)?;
    let mut hooks = steered_hooks(sae, steer)?;
    hooks.capture(sae.point());
    let g = lm.generate(&ids, cfg, &mut hooks, |_| {})?;
    let rows = hooks
        .store()
        .get(sae.point())?
        .ok_or_else(|| InterpError::invalid("no residual captured"))?;
    let generated = rows.dim(0)? - ids.len();
    let activation = if generated == 0 {
        0.0
    } else {
        let acts = sae.feature_activations(&rows.narrow(0, ids.len(), generated)?, feature)?;
        acts.iter().map(|&a| a as f64).sum::<f64>() / generated as f64
    };
    Ok((g.text, activation))
}

/// Each prompt (after the few-shot `examples`) answered without and with `steer`, with the
/// same seed.
pub fn steer_pairs(
    lm: &LanguageModel,
    sae: &HookedSae,
    steer: &Steer,
    examples: &[String],
    prompts: &[String],
    cfg: &GenerationConfig,
    progress: &dyn Observer<usize>,
) -> Result<Vec<SteeredPair>> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (baseline, baseline_activation) =
                generate_steered(lm, sae, steer.feature, None, examples, p, cfg)?;
            let (steered, steered_activation) =
                generate_steered(lm, sae, steer.feature, Some(steer), examples, p, cfg)?;
            progress.observe(&(i + 1));
            Ok(SteeredPair {
                prompt: p.clone(),
                baseline,
                steered,
                baseline_activation,
                steered_activation,
            })
        })
        .collect()
}

/// Decides whether a generated text mentions the finding.
pub enum Judge {
    /// The labeller finds the observation, positive.
    Labeler(Box<Labeler>, Observation),
    /// Any of the keywords occurs (case-insensitive).
    Keywords(Vec<String>),
}

impl Judge {
    /// The finding's name.
    pub fn finding(&self) -> String {
        match self {
            Judge::Labeler(_, o) => o.name().to_string(),
            Judge::Keywords(k) => k.join("|"),
        }
    }

    pub fn mentions(&self, text: &str) -> bool {
        match self {
            Judge::Labeler(l, o) => l.label(text).0.get(*o) == Some(Status::Positive),
            Judge::Keywords(k) => {
                let t = text.to_lowercase();
                k.iter().any(|w| t.contains(&w.to_lowercase()))
            }
        }
    }
}

/// What a sweep runs.
pub struct SweepConfig {
    pub feature: usize,
    pub mode: SteerMode,
    /// Coefficients tried besides 0 (the baseline, always run).
    pub coefs: Vec<f64>,
    /// Example reports shown as earlier exchanges before each prompt (few-shot).
    pub examples: Vec<String>,
    pub prompts: Vec<String>,
    pub judge: Judge,
    pub generation: GenerationConfig,
    /// Held-out texts the perplexity is measured on, and how they are windowed.
    pub heldout: Vec<String>,
    pub windower: Windower,
    /// The best coefficient must keep perplexity below this multiple of the baseline's.
    pub max_perplexity_ratio: f64,
}

/// One coefficient's effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub coef: f64,
    pub mentions: usize,
    pub prompts: usize,
    pub rate: f64,
    /// Mean feature activation on the generated tokens.
    pub activation: f64,
    pub perplexity: f64,
    pub perplexity_ratio: f64,
}

/// The chosen coefficient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub coef: f64,
    pub rate: f64,
    pub perplexity_ratio: f64,
}

/// `summary.json` of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub feature: usize,
    pub finding: String,
    pub baseline_rate: f64,
    /// The highest mention rate among coefficients within the perplexity bound (the
    /// baseline if none is).
    pub best: Best,
    pub max_perplexity_ratio: f64,
    pub mode: SteerMode,
    pub points: Vec<SweepPoint>,
}

/// Progress: coefficients done, of the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepProgress {
    pub done: usize,
    pub total: usize,
}

/// Runs the sweep.
pub fn steer_sweep(
    lm: &LanguageModel,
    sae: &HookedSae,
    cfg: &SweepConfig,
    progress: &dyn Observer<SweepProgress>,
) -> Result<SweepSummary> {
    sae.check_feature(cfg.feature)?;
    if cfg.prompts.is_empty() || cfg.heldout.is_empty() {
        return Err(InterpError::invalid(
            "a sweep needs prompts and held-out text",
        ));
    }
    let mut coefs = vec![0.0];
    coefs.extend(cfg.coefs.iter().copied().filter(|&c| c != 0.0));
    let mut points: Vec<SweepPoint> = Vec::with_capacity(coefs.len());
    for (i, &coef) in coefs.iter().enumerate() {
        let steer = Steer {
            feature: cfg.feature,
            coef,
            mode: cfg.mode,
        };
        let steer = (coef != 0.0 || cfg.mode == SteerMode::Clamp).then_some(&steer);
        let mut mentions = 0;
        let mut activation = 0.0;
        for p in &cfg.prompts {
            let (text, a) = generate_steered(
                lm,
                sae,
                cfg.feature,
                steer,
                &cfg.examples,
                p,
                &cfg.generation,
            )?;
            mentions += usize::from(cfg.judge.mentions(&text));
            activation += a;
        }
        let perplexity = perplexity(lm, sae, &cfg.windower, steer, &cfg.heldout)?;
        let n = cfg.prompts.len();
        points.push(SweepPoint {
            coef,
            mentions,
            prompts: n,
            rate: mentions as f64 / n as f64,
            activation: activation / n as f64,
            perplexity,
            perplexity_ratio: perplexity / points.first().map_or(perplexity, |b| b.perplexity),
        });
        progress.observe(&SweepProgress {
            done: i + 1,
            total: coefs.len(),
        });
    }
    let baseline = &points[0];
    let best = points
        .iter()
        .filter(|p| p.perplexity_ratio < cfg.max_perplexity_ratio)
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .unwrap_or(baseline);
    Ok(SweepSummary {
        feature: cfg.feature,
        finding: cfg.judge.finding(),
        baseline_rate: baseline.rate,
        best: Best {
            coef: best.coef,
            rate: best.rate,
            perplexity_ratio: best.perplexity_ratio,
        },
        max_perplexity_ratio: cfg.max_perplexity_ratio,
        mode: cfg.mode,
        points,
    })
}

/// exp(mean next-token CE) of `texts` (each windowed as the SAE's store was) with `steer`
/// applied.
pub fn perplexity(
    lm: &LanguageModel,
    sae: &HookedSae,
    windower: &Windower,
    steer: Option<&Steer>,
    texts: &[String],
) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for text in texts {
        for w in windower.windows(lm, text)? {
            if w.content().len() < 2 {
                continue;
            }
            // Steering edits the template's tokens too, as it does a generation's prompt,
            // so each window runs whole rather than after the unsteered prefix cache.
            let mut hooks = steered_hooks(sae, steer)?;
            let logits = lm
                .model
                .forward(&w.ids, &mut lm.model.new_cache(), &mut hooks)?;
            let ce = crate::splice::next_token_losses(&logits, &w.ids, w.content_start)?;
            sum += ce.iter().sum::<f64>();
            n += ce.len();
        }
    }
    if n == 0 {
        return Err(InterpError::invalid(
            "the held-out texts have no tokens to score",
        ));
    }
    Ok((sum / n as f64).exp())
}

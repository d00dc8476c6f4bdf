//! Interventions with an SAE during generation: splicing its reconstruction in, and
//! steering with a feature's decoder direction (adding it, or clamping the feature's
//! activation to a value while keeping the SAE's error, as in Templeton et al. 2024).
//!
//! Coefficients are in the SAE's own units (the activations of its latents, on the
//! normalised residual stream): `add` with `coef` moves the residual by `coef` times the
//! decoder row, exactly as if the feature's activation rose by `coef`. Edits apply at the
//! tokens the SAE's [`TokenFilter`] keeps, with sequence positions standing for report
//! positions (so the attention sink at position 0 is never edited).

use crate::inputs::model_name;
use crate::{InterpError, Result};
use candle_core::{Device, Tensor};
use radlens_core::results::read_json;
use radlens_lm::openai::{Intervention, Steer, SteerMode};
use radlens_lm::{HookContext, HookPoint, Hooks};
use radlens_sae::formats::load_sae;
use radlens_sae::run::TrainReport;
use radlens_sae::tokens::{TokenClass, TokenFilter, TokenPolicy};
use radlens_sae::Sae;
use std::path::Path;
use std::sync::Arc;

/// An SAE with the layer it reads and the tokens it may edit.
#[derive(Clone)]
pub struct HookedSae {
    pub sae: Arc<Sae>,
    pub layer: usize,
    pub filter: TokenFilter,
}

impl HookedSae {
    /// Loads the SAE in `dir` for the model file `model`: the layer and model come from
    /// its `train.json` (or `layer` for an SAE without one), the token filter from its
    /// `token_filter.json` (or the default policy without the norm rule). Errors if
    /// `layer` contradicts `train.json` or the SAE was trained on another model.
    pub fn load(dir: &Path, model: &Path, layer: Option<usize>) -> Result<Self> {
        let sae = load_sae(dir)?;
        let report = dir.join(radlens_sae::run::REPORT);
        let trained = if report.exists() {
            Some(read_json::<TrainReport>(&report)?.store)
        } else {
            None
        };
        let layer = match (&trained, layer) {
            (Some(s), Some(l)) if s.layer != l => {
                return Err(InterpError::invalid(format!(
                    "{}: the SAE was trained on layer {} but layer {l} was asked for",
                    dir.display(),
                    s.layer
                )))
            }
            (Some(s), _) => s.layer,
            (None, Some(l)) => l,
            (None, None) => {
                return Err(InterpError::invalid(format!(
                    "{}: no train.json says which layer the SAE reads; give the layer",
                    dir.display()
                )))
            }
        };
        let name = model_name(model);
        if let Some(s) = trained.filter(|s| s.model != name) {
            return Err(InterpError::invalid(format!(
                "{}: the SAE was trained on activations of {}, not {name}",
                dir.display(),
                s.model
            )));
        }
        let filter = TokenFilter::load(dir)?.unwrap_or(TokenFilter {
            policy: TokenPolicy {
                max_norm_ratio: None,
                ..TokenPolicy::default()
            },
            median_norm: 0.0,
        });
        Ok(Self {
            sae: Arc::new(sae),
            layer,
            filter,
        })
    }

    /// The hook point the SAE reads and edits.
    pub fn point(&self) -> HookPoint {
        HookPoint::ResidPost(self.layer)
    }

    /// Errors unless `feature` is one of the SAE's latents.
    pub fn check_feature(&self, feature: usize) -> Result<()> {
        let n = self.sae.config().d_sae;
        if feature >= n {
            return Err(InterpError::invalid(format!(
                "feature {feature} is out of range: the SAE has {n} latents"
            )));
        }
        Ok(())
    }

    /// The decoder direction of `feature` in raw residual units: the change of the
    /// residual when the feature's activation rises by one.
    pub fn direction(&self, feature: usize) -> Result<Tensor> {
        self.check_feature(feature)?;
        Ok(self.directions(feature, 1)?.squeeze(0)?)
    }

    /// The decoder directions of features `start..start + len`, shape (len, d), as
    /// [`Self::direction`] gives each.
    pub fn directions(&self, start: usize, len: usize) -> Result<Tensor> {
        let rows = self.sae.w_dec().narrow(0, start, len)?;
        Ok((rows / self.sae.activation_scale() as f64)?)
    }

    /// The activations of `feature` on rows `x` (tokens, d), shape (tokens,).
    pub fn feature_activations(&self, x: &Tensor, feature: usize) -> Result<Vec<f32>> {
        self.check_feature(feature)?;
        let dense = self.sae.encode(x)?.to_dense()?;
        Ok(dense.narrow(1, feature, 1)?.squeeze(1)?.to_vec1()?)
    }

    /// Registers on `hooks` the edits `intervention` asks for: the splice first, then each
    /// steer in order.
    pub fn register(&self, hooks: &mut Hooks, intervention: &Intervention) -> Result<()> {
        for s in &intervention.steer {
            self.check_feature(s.feature)?;
            if !s.coef.is_finite() {
                return Err(InterpError::invalid(format!(
                    "steering coefficient {} of feature {} is not finite",
                    s.coef, s.feature
                )));
            }
        }
        if intervention.splice_sae {
            let me = self.clone();
            hooks.replace(self.point(), move |ctx, x| {
                me.edit_kept(ctx, x, |rows| {
                    me.sae.decode(&me.sae.encode(rows)?).map_err(Into::into)
                })
            });
        }
        for s in &intervention.steer {
            let me = self.clone();
            let s = s.clone();
            let direction = self.direction(s.feature)?.unsqueeze(0)?;
            hooks.replace(self.point(), move |ctx, x| {
                me.edit_kept(ctx, x, |rows| me.steer_rows(rows, &s, &direction))
            });
        }
        Ok(())
    }

    fn steer_rows(&self, rows: &Tensor, s: &Steer, direction: &Tensor) -> Result<Tensor> {
        let n = rows.dim(0)?;
        let amount = match s.mode {
            SteerMode::Add => vec![s.coef as f32; n],
            SteerMode::Clamp => self
                .feature_activations(rows, s.feature)?
                .into_iter()
                .map(|a| s.coef as f32 - a)
                .collect(),
        };
        let amount = Tensor::from_vec(amount, (n, 1), rows.device())?;
        Ok(rows.broadcast_add(&amount.broadcast_mul(direction)?)?)
    }

    /// `x` with `edit` applied to the rows the filter keeps; the other rows unchanged.
    fn edit_kept(
        &self,
        ctx: &HookContext,
        x: &Tensor,
        edit: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let positions: Vec<u32> = ctx.positions().map(|p| p as u32).collect();
        let run = || -> Result<Tensor> {
            let classes = self.filter.classes(x, &positions)?;
            if classes.iter().all(|&c| c != TokenClass::Kept) {
                return Ok(x.clone());
            }
            let keep: Vec<f32> = classes
                .iter()
                .map(|&c| f32::from(u8::from(c == TokenClass::Kept)))
                .collect();
            let keep = Tensor::from_vec(keep, (classes.len(), 1), &Device::Cpu)?;
            let new = edit(x)?;
            Ok((x.broadcast_mul(&(1.0 - &keep)?)? + new.broadcast_mul(&keep)?)?)
        };
        run().map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

//! Hook points on the residual stream and a registry of hooks that read or edit it.
//!
//! A [`Hooks`] registry is passed to every forward pass. At each [`HookPoint`] the
//! registered hooks run in registration order on the residual stream, a tensor of
//! shape `(tokens, hidden)` holding the positions processed by this call:
//! - [`Hooks::capture`] records the activation into an [`ActivationStore`];
//! - [`Hooks::replace`] swaps it for the value a closure returns (SAE splicing, ablation);
//! - [`Hooks::add`] adds a scaled direction at chosen positions (steering).

use crate::error::{candle_message, LmError, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

/// A location on the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// Input of block `layer` (for layer 0: the token embeddings).
    ResidPre(usize),
    /// Output of block `layer` (for the last layer: the input of the final norm).
    ResidPost(usize),
}

impl HookPoint {
    /// The block index this point belongs to.
    pub fn layer(self) -> usize {
        match self {
            HookPoint::ResidPre(l) | HookPoint::ResidPost(l) => l,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::ResidPre(l) => write!(f, "resid_pre.{l}"),
            HookPoint::ResidPost(l) => write!(f, "resid_post.{l}"),
        }
    }
}

/// Where in the sequence the activation handed to a hook sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookContext {
    /// Absolute position (index in the whole sequence, KV cache included) of row 0.
    pub start: usize,
    /// Number of rows (tokens) in this call.
    pub len: usize,
}

impl HookContext {
    /// Absolute positions covered by this call.
    pub fn positions(&self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

/// Which absolute sequence positions a steering hook applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    /// Every position.
    All,
    /// Absolute positions in this half-open range.
    Range(Range<usize>),
    /// Positions at or after this absolute index (e.g. only generated tokens).
    From(usize),
}

impl Positions {
    fn contains(&self, pos: usize) -> bool {
        match self {
            Positions::All => true,
            Positions::Range(r) => r.contains(&pos),
            Positions::From(start) => pos >= *start,
        }
    }
}

/// A closure mapping a residual activation to its replacement.
type EditFn = Box<dyn FnMut(&HookContext, &Tensor) -> candle_core::Result<Tensor>>;

enum HookKind {
    Capture,
    Edit(EditFn),
}

/// Activations recorded by capture hooks, keyed by hook point.
///
/// Each forward pass appends its rows, so after generating with a KV cache the
/// store holds the prompt rows followed by one row per generated token.
#[derive(Debug, Default)]
pub struct ActivationStore {
    chunks: HashMap<HookPoint, Vec<Tensor>>,
}

impl ActivationStore {
    /// All captured rows at `point`, concatenated to shape `(tokens, hidden)`.
    pub fn get(&self, point: HookPoint) -> Result<Option<Tensor>> {
        match self.chunks.get(&point) {
            None => Ok(None),
            Some(chunks) => Ok(Some(Tensor::cat(chunks, 0)?)),
        }
    }

    /// Hook points with captured data, sorted.
    pub fn points(&self) -> Vec<HookPoint> {
        let mut points: Vec<_> = self.chunks.keys().copied().collect();
        points.sort();
        points
    }

    /// Forgets everything captured so far.
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    fn push(&mut self, point: HookPoint, activation: Tensor) {
        self.chunks.entry(point).or_default().push(activation);
    }
}

/// A registry of hooks applied during forward passes.
#[derive(Default)]
pub struct Hooks {
    entries: Vec<(HookPoint, HookKind)>,
    store: ActivationStore,
}

impl Hooks {
    /// An empty registry: the forward pass is the plain model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the activation at `point` into [`Hooks::store`].
    pub fn capture(&mut self, point: HookPoint) -> &mut Self {
        self.entries.push((point, HookKind::Capture));
        self
    }

    /// Replaces the activation at `point` by `f(ctx, activation)`; the result must keep the
    /// shape. The general editing hook, e.g. to splice in a sparse autoencoder's reconstruction.
    pub fn replace(
        &mut self,
        point: HookPoint,
        f: impl FnMut(&HookContext, &Tensor) -> candle_core::Result<Tensor> + 'static,
    ) -> &mut Self {
        self.entries.push((point, HookKind::Edit(Box::new(f))));
        self
    }

    /// Adds `scale * direction` (shape `(hidden,)`) to the activation at `point`,
    /// at the absolute positions selected by `positions` (steering).
    pub fn add(
        &mut self,
        point: HookPoint,
        direction: Tensor,
        scale: f64,
        positions: Positions,
    ) -> &mut Self {
        self.replace(point, move |ctx, x| {
            let delta = (direction.to_dtype(x.dtype())? * scale)?.unsqueeze(0)?;
            let mask: Vec<f32> = ctx
                .positions()
                .map(|p| if positions.contains(p) { 1.0 } else { 0.0 })
                .collect();
            let mask = Tensor::from_vec(mask, (ctx.len, 1), x.device())?.to_dtype(x.dtype())?;
            x.broadcast_add(&mask.broadcast_mul(&delta)?)
        })
    }

    /// Activations recorded by capture hooks.
    pub fn store(&self) -> &ActivationStore {
        &self.store
    }

    /// Mutable access to the captured activations (e.g. to clear them).
    pub fn store_mut(&mut self) -> &mut ActivationStore {
        &mut self.store
    }

    /// Errors if any hook targets a layer `>= n_layers`.
    pub fn validate(&self, n_layers: usize) -> Result<()> {
        match self.entries.iter().find(|(p, _)| p.layer() >= n_layers) {
            Some((point, _)) => Err(LmError::HookOutOfRange {
                point: point.to_string(),
                n_layers,
            }),
            None => Ok(()),
        }
    }

    /// Runs the hooks registered at `point` on `x` (shape `(tokens, hidden)`).
    pub(crate) fn apply(
        &mut self,
        point: HookPoint,
        ctx: &HookContext,
        x: Tensor,
    ) -> Result<Tensor> {
        let mut x = x;
        for (p, kind) in self.entries.iter_mut() {
            if *p != point {
                continue;
            }
            match kind {
                HookKind::Capture => self.store.push(point, x.to_dtype(DType::F32)?),
                HookKind::Edit(f) => {
                    let y = f(ctx, &x).map_err(|e| {
                        LmError::InvalidArgument(format!(
                            "hook at {point} failed: {}",
                            candle_message(&e)
                        ))
                    })?;
                    if y.dims() != x.dims() {
                        return Err(LmError::InvalidArgument(format!(
                            "hook at {point} returned shape {:?}, expected {:?}",
                            y.dims(),
                            x.dims()
                        )));
                    }
                    x = y;
                }
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ones(rows: usize, cols: usize) -> Tensor {
        Tensor::ones((rows, cols), DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn add_hook_only_touches_selected_absolute_positions() {
        let mut hooks = Hooks::new();
        let dir = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        hooks
            .add(HookPoint::ResidPre(0), dir, 0.5, Positions::From(11))
            .capture(HookPoint::ResidPre(0));
        let ctx = HookContext { start: 10, len: 3 };
        let y = hooks
            .apply(HookPoint::ResidPre(0), &ctx, ones(3, 2))
            .unwrap();
        let rows: Vec<Vec<f32>> = y.to_vec2().unwrap();
        assert_eq!(rows, vec![vec![1.0, 1.0], vec![1.5, 2.0], vec![1.5, 2.0]]);
        // The capture registered after the edit sees the edited value.
        let captured = hooks.store().get(HookPoint::ResidPre(0)).unwrap().unwrap();
        assert_eq!(captured.to_vec2::<f32>().unwrap(), rows);
        // Other points are untouched.
        let z = hooks
            .apply(HookPoint::ResidPost(0), &ctx, ones(3, 2))
            .unwrap();
        assert_eq!(z.to_vec2::<f32>().unwrap(), vec![vec![1.0; 2]; 3]);
    }

    #[test]
    fn captures_accumulate_across_calls() {
        let mut hooks = Hooks::new();
        hooks.capture(HookPoint::ResidPost(1));
        for start in 0..3 {
            let ctx = HookContext { start, len: 1 };
            hooks
                .apply(HookPoint::ResidPost(1), &ctx, ones(1, 4))
                .unwrap();
        }
        let all = hooks.store().get(HookPoint::ResidPost(1)).unwrap().unwrap();
        assert_eq!(all.dims(), &[3, 4]);
        assert_eq!(hooks.store().points(), vec![HookPoint::ResidPost(1)]);
        hooks.store_mut().clear();
        assert!(hooks
            .store()
            .get(HookPoint::ResidPost(1))
            .unwrap()
            .is_none());
    }

    #[test]
    fn shape_changing_replacement_is_rejected() {
        let mut hooks = Hooks::new();
        hooks.replace(HookPoint::ResidPre(2), |_, x| x.narrow(1, 0, 1));
        let ctx = HookContext { start: 0, len: 2 };
        let err = hooks
            .apply(HookPoint::ResidPre(2), &ctx, ones(2, 3))
            .unwrap_err();
        assert!(err.to_string().contains("resid_pre.2"), "{err}");
    }

    #[test]
    fn validate_rejects_layers_past_the_end() {
        let mut hooks = Hooks::new();
        hooks.capture(HookPoint::ResidPre(4));
        assert!(hooks.validate(5).is_ok());
        let err = hooks.validate(4).unwrap_err();
        assert!(matches!(err, LmError::HookOutOfRange { n_layers: 4, .. }));
    }
}

//! A convolution with bias followed by GroupNorm, affine and ReLU as one graph node, so that
//! candle's backward pass neither allocates nor accumulates a gradient for the convolution's
//! output: the node keeps that output for its own backward pass.

use crate::conv2d::{bias_conv_grads, conv2d_bias, forward as conv_forward, ConvGeom};
use crate::group_norm::{group_norm, GroupNorm, NormGeom};
use crate::storage::{f32_slice_of_len, is_fast_path};
use candle_core::{bail, CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// `relu(GroupNorm(conv2d(x, w, padding) + bias) * gamma + beta)` with `groups` groups: the
/// composition of [`conv2d_bias`](crate::conv2d_bias) and [`group_norm`](crate::group_norm)
/// with `relu`, computed as one op.
///
/// Differentiable with respect to every input. Non-f32 or non-CPU tensors use those two ops.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_group_norm_relu(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    padding: usize,
    groups: usize,
    eps: f64,
) -> Result<Tensor> {
    let conv = ConvGeom::new(x.dims(), w.dims(), padding)?;
    let [_, cout, ..] = conv.out_dims();
    if bias.dims() != [cout] {
        bail!(
            "conv2d_group_norm_relu: bias must have shape [{cout}], got {:?}",
            bias.dims()
        )
    }
    let norm = NormGeom::new(&conv.out_dims(), gamma.dims(), beta.dims(), groups)?;
    if !is_fast_path(&[x, w, bias, gamma, beta]) {
        let y = conv2d_bias(x, w, bias, padding)?;
        return group_norm(&y, gamma, beta, groups, eps, true);
    }
    let params = Tensor::cat(&[&w.flatten_all()?, bias, gamma, beta], 0)?;
    let op = ConvNormRelu {
        conv,
        norm: GroupNorm::new(norm, eps, true),
        conv_out: Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&params, op)
}

/// The fused op over `(x, [w; bias; gamma; beta])`.
struct ConvNormRelu {
    conv: ConvGeom,
    norm: GroupNorm,
    /// The convolution's output, saved by the forward pass for the backward pass.
    conv_out: Mutex<Option<Tensor>>,
}

impl ConvNormRelu {
    /// Offsets of bias, gamma and beta in the packed parameters, and their total length.
    fn param_offsets(&self) -> [usize; 4] {
        let (_, w_len) = self.conv.input_and_weight_len();
        let c = self.conv.out_dims()[1];
        [w_len, w_len + c, w_len + 2 * c, w_len + 3 * c]
    }
}

impl CustomOp2 for ConvNormRelu {
    fn name(&self) -> &'static str {
        "radlens-conv2d-group-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x_len, _) = self.conv.input_and_weight_len();
        let [b0, g0, be0, end] = self.param_offsets();
        let x = f32_slice_of_len(s1, l1, x_len, self.name())?;
        let p = f32_slice_of_len(s2, l2, end, self.name())?;
        let t = conv_forward(&self.conv, x, &p[..b0], Some(&p[b0..g0]));
        let y = self.norm.run(&t, &p[g0..be0], &p[be0..]);
        let shape = Shape::from(self.conv.out_dims().to_vec());
        let saved = Tensor::from_vec(t, shape.clone(), &Device::Cpu)?;
        *self.conv_out.lock().expect("unpoisoned") = Some(saved);
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.conv_out.lock().expect("unpoisoned").clone();
        let Some(t) = saved else {
            bail!("{}: backward before forward", self.name())
        };
        let [b0, g0, _, end] = self.param_offsets();
        let [dt, dgamma, dbeta] =
            self.norm
                .grads(&t, grad_res, &params.narrow(0, g0, end - g0)?)?;
        let w = params
            .narrow(0, 0, b0)?
            .reshape(self.conv.weight_dims().to_vec())?;
        let (dx, dw, db) = bias_conv_grads(&self.conv, x, &w, true, &dt)?;
        let dparams = match (dw, db) {
            (Some(dw), Some(db)) if params.track_op() => {
                Some(Tensor::cat(&[&dw.flatten_all()?, &db, &dgamma, &dbeta], 0)?)
            }
            _ => None,
        };
        Ok((dx, dparams))
    }
}

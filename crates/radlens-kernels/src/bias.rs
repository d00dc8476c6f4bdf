//! The gradient of a per-channel bias: the output gradient summed over items and pixels.

use crate::reduce::sum1;
use crate::storage::f32_slice_of_len;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Per-channel sums (C) of a contiguous f32 CPU gradient `dy` (N, C, ...).
pub(crate) fn bias_grad(dy: &Tensor) -> Result<Tensor> {
    let [n, c, rest @ ..] = dy.dims() else {
        bail!("bias_grad: expected (N, C, ...), got {:?}", dy.dims())
    };
    let plane = rest.iter().product();
    dy.contiguous()?.apply_op1_no_bwd(&BiasGrad {
        n: *n,
        c: *c,
        plane,
    })
}

/// Op: `dy (N, C, plane) -> (C)`.
struct BiasGrad {
    n: usize,
    c: usize,
    plane: usize,
}

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "radlens-bias-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, plane) = (self.n, self.c, self.plane);
        let dy = f32_slice_of_len(storage, layout, n * c * plane, self.name())?;
        let sums = (0..c)
            .into_par_iter()
            .map(|ch| {
                let rows = (0..n).map(|i| &dy[(i * c + ch) * plane..][..plane]);
                rows.map(|row| sum1(row, |v| v)).sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

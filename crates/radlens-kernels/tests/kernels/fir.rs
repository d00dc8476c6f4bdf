use crate::common::{
    assert_close, check_finite_differences, eval_grads, loss_weights, rand_tensor, to_vec,
};
use radlens_kernels::{downsample2x_fir, upsample2x_fir};

/// StyleGAN2's `upfirdn2d` written out: zero insertion by `up`, zero padding `pad0`/`pad1`,
/// a 2D correlation with the outer product of [1,3,3,1]/8 times `up`^2, every `down`-th pixel.
fn naive(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    up: usize,
    down: usize,
    pad: (usize, usize),
) -> (Vec<f32>, [usize; 2]) {
    let f = [1.0f32, 3.0, 3.0, 1.0].map(|v| v / 8.0);
    let (hp, wp) = (h * up + pad.0 + pad.1, w * up + pad.0 + pad.1);
    let (ho, wo) = ((hp - 4) / down + 1, (wp - 4) / down + 1);
    let mut out = Vec::new();
    for p in 0..n * c {
        let mut padded = vec![0f32; hp * wp];
        for y in 0..h {
            for xx in 0..w {
                padded[(y * up + pad.0) * wp + xx * up + pad.0] = x[p * h * w + y * w + xx];
            }
        }
        for oy in 0..ho {
            for ox in 0..wo {
                let mut s = 0.0;
                for ty in 0..4 {
                    for tx in 0..4 {
                        s += f[ty] * f[tx] * padded[(oy * down + ty) * wp + ox * down + tx];
                    }
                }
                out.push(s * (up * up) as f32);
            }
        }
    }
    (out, [ho, wo])
}

/// `A^T dy` of the naive resampling `A`, column by column from unit inputs.
fn naive_adjoint(
    shape: [usize; 4],
    up: usize,
    down: usize,
    pad: (usize, usize),
    dy: &[f32],
) -> Vec<f32> {
    let len: usize = shape.iter().product();
    (0..len)
        .map(|i| {
            let mut e = vec![0f32; len];
            e[i] = 1.0;
            let (col, _) = naive(&e, shape, up, down, pad);
            col.iter().zip(dy).map(|(a, b)| a * b).sum()
        })
        .collect()
}

const SHAPES: &[[usize; 4]] = &[[1, 1, 4, 4], [2, 3, 6, 8], [1, 2, 2, 10]];

#[test]
fn upsample_matches_naive_upfirdn2d() {
    for (seed, &shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(seed as u64, &shape);
        let (out, grads) = eval_grads(|a| upsample2x_fir(a[0]), std::slice::from_ref(&x));
        let (want, [ho, wo]) = naive(&to_vec(&x), shape, 2, 1, (2, 1));
        assert_eq!([ho, wo], [shape[2] * 2, shape[3] * 2]);
        assert_close(&format!("{shape:?} up"), &out, &want, 1e-6);
        let dx = naive_adjoint(shape, 2, 1, (2, 1), &loss_weights(out.len()));
        assert_close(&format!("{shape:?} up dx"), &grads[0], &dx, 1e-5);
    }
}

#[test]
fn downsample_matches_naive_upfirdn2d() {
    for (seed, &shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(10 + seed as u64, &shape);
        let (out, grads) = eval_grads(|a| downsample2x_fir(a[0]), std::slice::from_ref(&x));
        let (want, [ho, wo]) = naive(&to_vec(&x), shape, 1, 2, (1, 1));
        assert_eq!([ho, wo], [shape[2] / 2, shape[3] / 2]);
        assert_close(&format!("{shape:?} down"), &out, &want, 1e-6);
        let dx = naive_adjoint(shape, 1, 2, (1, 1), &loss_weights(out.len()));
        assert_close(&format!("{shape:?} down dx"), &grads[0], &dx, 1e-5);
    }
}

#[test]
fn resampling_gradients_match_finite_differences() {
    let x = rand_tensor(20, &[2, 2, 4, 6]);
    check_finite_differences(|a| upsample2x_fir(a[0]), std::slice::from_ref(&x));
    check_finite_differences(|a| downsample2x_fir(a[0]), std::slice::from_ref(&x));
}

#[test]
fn constant_stays_constant_inside_and_odd_sizes_are_refused() {
    let x = candle_core::Tensor::ones(
        (1, 1, 8, 8),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let up = to_vec(&upsample2x_fir(&x).unwrap());
    assert!((up[5 * 16 + 7] - 1.0).abs() < 1e-6);
    let down = to_vec(&downsample2x_fir(&x).unwrap());
    assert!((down[4 + 1] - 1.0).abs() < 1e-6);
    let odd = rand_tensor(1, &[1, 1, 5, 4]);
    assert!(downsample2x_fir(&odd)
        .unwrap_err()
        .to_string()
        .contains("even"));
}

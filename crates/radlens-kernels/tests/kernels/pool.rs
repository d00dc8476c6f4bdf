use crate::common::{assert_close, eval_grads, loss_weights, rand_tensor, to_vec};
use candle_core::{DType, Device, Tensor};
use radlens_kernels::max_pool2d_2x2;

const SHAPES: &[[usize; 4]] = &[[1, 3, 7, 5], [2, 13, 6, 9], [3, 5, 8, 8], [2, 2, 2, 3]];

/// Naive pooling and the gradient of `sum(out * dy)`, routed to the first max of each window.
fn naive(x: &[f32], [n, c, h, w]: [usize; 4]) -> [Vec<f32>; 2] {
    let (ho, wo) = (h / 2, w / 2);
    let dy = loss_weights(n * c * ho * wo);
    let mut out = vec![0f32; dy.len()];
    let mut dx = vec![0f32; x.len()];
    for p in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = p * h * w + 2 * oy * w + 2 * ox;
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let i = p * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                    if x[i] > x[best] {
                        best = i;
                    }
                }
                let o = (p * ho + oy) * wo + ox;
                out[o] = x[best];
                dx[best] += dy[o];
            }
        }
    }
    [out, dx]
}

#[test]
fn max_pool_matches_naive_reference() {
    for (seed, &shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(seed as u64, &shape);
        let (out, grads) = eval_grads(|a| max_pool2d_2x2(a[0]), std::slice::from_ref(&x));
        let [want_out, want_dx] = naive(&to_vec(&x), shape);
        assert_eq!(out, want_out, "{shape:?} out");
        assert_eq!(grads[0], want_dx, "{shape:?} dx");
    }
}

#[test]
fn max_pool_matches_candle() {
    // Even sizes only: candle's backward does not handle floored odd sizes. candle 0.11.1
    // also scales its max-pool gradient by 1/4 (it multiplies by the window mean of the
    // argmax mask instead of dividing by the number of maxima), so it is rescaled here; the
    // unscaled gradient is checked against naive loops and finite differences above.
    for (seed, shape) in [[1, 3, 8, 6], [3, 5, 8, 8], [2, 16, 4, 2]]
        .iter()
        .enumerate()
    {
        let x = rand_tensor(100 + seed as u64, shape);
        let (out, grads) = eval_grads(|a| max_pool2d_2x2(a[0]), std::slice::from_ref(&x));
        let (want_out, want) = eval_grads(|a| a[0].max_pool2d(2), &[x]);
        assert_eq!(out, want_out, "{shape:?} out");
        let want_dx: Vec<f32> = want[0].iter().map(|g| 4.0 * g).collect();
        assert_close(&format!("{shape:?} dx"), &grads[0], &want_dx, 1e-6);
    }
}

#[test]
fn max_pool_gradient_matches_finite_differences() {
    // Distinct values spaced by 0.1, so a small perturbation never changes the argmax.
    let shape = [1, 2, 4, 5];
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|i| ((i * 7) % len) as f32 * 0.1).collect();
    let x = Tensor::from_vec(values.clone(), &shape, &Device::Cpu).unwrap();
    let (out, grads) = eval_grads(|a| max_pool2d_2x2(a[0]), &[x]);
    let r = loss_weights(out.len());
    let loss = |v: &[f32]| -> f64 {
        let t = Tensor::from_vec(v.to_vec(), &shape, &Device::Cpu).unwrap();
        let out = to_vec(&max_pool2d_2x2(&t).unwrap());
        out.iter().zip(&r).map(|(&o, &r)| o as f64 * r as f64).sum()
    };
    let eps = 1e-2f32;
    for (j, &analytic) in grads[0].iter().enumerate() {
        let (mut plus, mut minus) = (values.clone(), values.clone());
        plus[j] += eps;
        minus[j] -= eps;
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
        assert!((numeric - analytic as f64).abs() < 1e-3, "element {j}");
    }
}

#[test]
fn max_pool_routes_ties_to_first_max() {
    let x = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let (out, grads) = eval_grads(|a| max_pool2d_2x2(a[0]), &[x]);
    assert_eq!(out, vec![1.0]);
    assert_eq!(grads[0], vec![loss_weights(1)[0], 0.0, 0.0, 0.0]);
}

#[test]
fn max_pool_accepts_non_contiguous_input_and_falls_back_for_f64() {
    let x = rand_tensor(11, &[2, 3, 5, 6]).transpose(2, 3).unwrap();
    let got = to_vec(&max_pool2d_2x2(&x).unwrap());
    assert_eq!(got, to_vec(&x.contiguous().unwrap().max_pool2d(2).unwrap()));
    let x64 = x.to_dtype(DType::F64).unwrap();
    let got64 = max_pool2d_2x2(&x64).unwrap();
    assert_eq!(got64.dtype(), DType::F64);
    let want: Vec<f32> = got.clone();
    assert_eq!(to_vec(&got64.to_dtype(DType::F32).unwrap()), want);
}

#[test]
fn max_pool_rejects_bad_shapes() {
    assert!(max_pool2d_2x2(&rand_tensor(12, &[3, 4, 4])).is_err());
    assert!(max_pool2d_2x2(&rand_tensor(12, &[1, 3, 1, 4])).is_err());
}

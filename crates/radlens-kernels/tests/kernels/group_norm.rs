use crate::common::{
    assert_close, check_finite_differences, eval_grads, loss_weights, rand_tensor, rand_vec, to_vec,
};
use candle_core::{DType, Device, Tensor, Var};
use radlens_kernels::group_norm;

const EPS: f64 = 1e-5;

/// (input shape, groups): batch 1, odd sizes, channels that are not multiples of 8, 3D input.
const CASES: &[(&[usize], usize)] = &[
    (&[1, 6, 5, 3], 3),
    (&[2, 5, 7, 1], 5),
    (&[3, 12, 4, 4], 4),
    (&[2, 3, 9], 1),
    (&[1, 16, 8, 8], 8),
];

/// Naive `relu?(GroupNorm(x) * gamma + beta)` in f64.
pub fn naive_forward(
    x: &[f64],
    shape: &[usize],
    gamma: &[f64],
    beta: &[f64],
    groups: usize,
    relu: bool,
) -> Vec<f64> {
    let (n, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    let m = c / groups * hw;
    let mut out = vec![0f64; x.len()];
    for b in 0..n {
        for g in 0..groups {
            let range = (b * c + g * c / groups) * hw..(b * c + (g + 1) * c / groups) * hw;
            let mean = x[range.clone()].iter().sum::<f64>() / m as f64;
            let var = x[range.clone()]
                .iter()
                .map(|v| (v - mean).powi(2))
                .sum::<f64>()
                / m as f64;
            for i in range {
                let ch = (i / hw) % c;
                let z = (x[i] - mean) / (var + EPS).sqrt() * gamma[ch] + beta[ch];
                out[i] = if relu { z.max(0.0) } else { z };
            }
        }
    }
    out
}

/// Naive output and gradients of `sum(out * R)`: f64 central differences of the f64 forward.
fn naive(
    x: &[f32],
    shape: &[usize],
    gamma: &[f32],
    beta: &[f32],
    groups: usize,
    relu: bool,
) -> [Vec<f32>; 4] {
    let up = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let mut inputs = [up(x), up(gamma), up(beta)];
    let r = loss_weights(x.len());
    let loss = |inp: &[Vec<f64>; 3]| -> f64 {
        let out = naive_forward(&inp[0], shape, &inp[1], &inp[2], groups, relu);
        out.iter().zip(&r).map(|(o, &r)| o * r as f64).sum()
    };
    let mut grads: [Vec<f32>; 3] = Default::default();
    for k in 0..3 {
        for j in 0..inputs[k].len() {
            let h = 1e-6;
            inputs[k][j] += h;
            let up = loss(&inputs);
            inputs[k][j] -= 2.0 * h;
            let down = loss(&inputs);
            inputs[k][j] += h;
            grads[k].push(((up - down) / (2.0 * h)) as f32);
        }
    }
    let out = naive_forward(&inputs[0], shape, &inputs[1], &inputs[2], groups, relu);
    let [dx, dg, db] = grads;
    [out.into_iter().map(|v| v as f32).collect(), dx, dg, db]
}

fn inputs(shape: &[usize], seed: u64) -> [Tensor; 3] {
    let c = shape[1];
    let x = (rand_tensor(seed, shape) * 3.0).unwrap();
    [x, rand_tensor(seed + 1, &[c]), rand_tensor(seed + 2, &[c])]
}

#[test]
fn group_norm_matches_naive_reference() {
    for relu in [false, true] {
        for (seed, &(shape, groups)) in CASES.iter().enumerate() {
            let args = inputs(shape, seed as u64);
            let (out, grads) =
                eval_grads(|a| group_norm(a[0], a[1], a[2], groups, EPS, relu), &args);
            let [x, g, b] = args.each_ref().map(to_vec);
            let want = naive(&x, shape, &g, &b, groups, relu);
            let what = format!("{shape:?}/{groups} relu {relu}");
            assert_close(&format!("{what} out"), &out, &want[0], 1e-5);
            assert_close(&format!("{what} dx"), &grads[0], &want[1], 1e-4);
            assert_close(&format!("{what} dgamma"), &grads[1], &want[2], 1e-4);
            assert_close(&format!("{what} dbeta"), &grads[2], &want[3], 1e-4);
        }
    }
}

#[test]
fn group_norm_relu_matches_candle() {
    // candle-nn's GroupNorm is reshape, mean, centre, variance, scale and affine; then ReLU.
    for (seed, &(shape, groups)) in CASES.iter().enumerate() {
        let args = inputs(shape, 100 + seed as u64);
        let (out, grads) = eval_grads(|a| group_norm(a[0], a[1], a[2], groups, EPS, true), &args);
        let stock = |a: &[&Tensor]| {
            let (n, c) = (shape[0], shape[1]);
            let xs = a[0].reshape((n, groups, ()))?;
            let centred = xs.broadcast_sub(&xs.mean_keepdim(2)?)?;
            let var = centred.sqr()?.mean_keepdim(2)?;
            let normed = centred
                .broadcast_div(&(var + EPS)?.sqrt()?)?
                .reshape(shape)?;
            let mut dims = vec![1; shape.len()];
            dims[1] = c;
            normed
                .broadcast_mul(&a[1].reshape(dims.as_slice())?)?
                .broadcast_add(&a[2].reshape(dims.as_slice())?)?
                .relu()
        };
        let (want_out, want) = eval_grads(stock, &args);
        for (what, got, want) in [
            ("out", &out, &want_out),
            ("dx", &grads[0], &want[0]),
            ("dgamma", &grads[1], &want[1]),
            ("dbeta", &grads[2], &want[2]),
        ] {
            assert_close(&format!("{shape:?} {what}"), got, want, 1e-4);
        }
    }
}

#[test]
fn group_norm_gradients_match_finite_differences() {
    for (seed, relu) in [(7, false), (8, true)] {
        let args = inputs(&[2, 4, 3, 2], seed);
        check_finite_differences(|a| group_norm(a[0], a[1], a[2], 2, EPS, relu), &args);
    }
}

#[test]
fn group_norm_constant_params_get_no_gradient() {
    let [x, g, b] = inputs(&[2, 4, 3, 3], 9);
    let x = Var::from_tensor(&x).unwrap();
    let grads = group_norm(&x, &g, &b, 2, EPS, true)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&g).is_none() && grads.get(&b).is_none());
    assert!(grads.get(&x).is_some());
}

#[test]
fn group_norm_falls_back_for_f64() {
    let [x, g, b] = inputs(&[2, 6, 4, 3], 10).map(|t| t.to_dtype(DType::F64).unwrap());
    let got = group_norm(&x, &g, &b, 3, EPS, true).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let f32s = [x, g, b].map(|t| t.to_dtype(DType::F32).unwrap());
    let want = group_norm(&f32s[0], &f32s[1], &f32s[2], 3, EPS, true).unwrap();
    assert_close(
        "f64",
        &to_vec(&got.to_dtype(DType::F32).unwrap()),
        &to_vec(&want),
        1e-5,
    );
}

#[test]
fn group_norm_rejects_bad_shapes() {
    let t = |shape: &[usize]| {
        Tensor::from_vec(rand_vec(11, shape.iter().product()), shape, &Device::Cpu).unwrap()
    };
    assert!(group_norm(&t(&[2, 6]), &t(&[6]), &t(&[6]), 3, EPS, true).is_err());
    assert!(group_norm(&t(&[2, 6, 3]), &t(&[6]), &t(&[6]), 4, EPS, true).is_err());
    assert!(group_norm(&t(&[2, 6, 3]), &t(&[6]), &t(&[6]), 0, EPS, true).is_err());
    assert!(group_norm(&t(&[2, 6, 3]), &t(&[5]), &t(&[6]), 3, EPS, true).is_err());
    assert!(group_norm(&t(&[0, 6, 3]), &t(&[6]), &t(&[6]), 3, EPS, true).is_err());
}

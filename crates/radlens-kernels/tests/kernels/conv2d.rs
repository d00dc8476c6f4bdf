use crate::common::{
    assert_close, check_finite_differences, eval_grads, loss_weights, rand_tensor, rand_vec, to_vec,
};
use candle_core::{DType, Device, Tensor, Var};
use radlens_kernels::{conv2d, conv2d_bias};

/// (input shape, weight shape, padding)
type Case = ([usize; 4], [usize; 4], usize);

const CASES: &[Case] = &[
    ([1, 3, 7, 5], [5, 3, 3, 3], 1),
    ([2, 13, 6, 9], [5, 13, 1, 1], 0),
    ([3, 5, 7, 5], [13, 5, 3, 3], 0),
    ([5, 4, 5, 6], [3, 4, 2, 3], 1),
    ([2, 3, 4, 4], [4, 3, 1, 1], 1),
    ([1, 2, 3, 3], [3, 2, 5, 5], 2),
    ([4, 16, 12, 10], [8, 16, 3, 3], 1),
    // more input than output channels
    ([2, 7, 6, 5], [3, 7, 3, 3], 0),
    ([1, 6, 7, 7], [2, 6, 5, 5], 1),
    ([3, 9, 5, 4], [4, 9, 3, 3], 2),
    // large enough for several row tiles, forward and backward
    ([1, 8, 48, 40], [5, 8, 3, 3], 1),
    ([1, 3, 30, 1000], [2, 3, 1, 1], 0),
];

/// Naive conv2d forward and the gradients of `sum(out * dy)`, accumulated in f64.
fn naive(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4], p: usize) -> [Vec<f32>; 3] {
    let [n, cin, h, wd] = xs;
    let [cout, _, kh, kw] = ws;
    let (ho, wo) = (h + 2 * p - kh + 1, wd + 2 * p - kw + 1);
    let dy = loss_weights(n * cout * ho * wo);
    let mut out = vec![0f64; dy.len()];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    for b in 0..n {
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let o = ((b * cout + co) * ho + oy) * wo + ox;
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy < p || ix < p || iy - p >= h || ix - p >= wd {
                                    continue;
                                }
                                let xi = ((b * cin + ci) * h + iy - p) * wd + ix - p;
                                let wi = ((co * cin + ci) * kh + ky) * kw + kx;
                                out[o] += x[xi] as f64 * w[wi] as f64;
                                dx[xi] += w[wi] as f64 * dy[o] as f64;
                                dw[wi] += x[xi] as f64 * dy[o] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    [out, dx, dw].map(|v| v.into_iter().map(|v| v as f32).collect())
}

fn inputs(case: &Case, seed: u64) -> [Tensor; 2] {
    let (xs, ws, _) = case;
    [rand_tensor(seed, xs), rand_tensor(seed + 1, ws)]
}

#[test]
fn conv2d_matches_naive_reference() {
    for (seed, case) in CASES.iter().enumerate() {
        let [x, w] = inputs(case, seed as u64);
        let (out, grads) = eval_grads(|a| conv2d(a[0], a[1], case.2), &[x.clone(), w.clone()]);
        let [want_out, want_dx, want_dw] = naive(&to_vec(&x), case.0, &to_vec(&w), case.1, case.2);
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-4);
        assert_close(&format!("{case:?} dx"), &grads[0], &want_dx, 1e-4);
        assert_close(&format!("{case:?} dw"), &grads[1], &want_dw, 1e-4);
    }
}

#[test]
fn conv2d_matches_candle() {
    for (seed, case) in CASES.iter().enumerate() {
        let x_w = inputs(case, 100 + seed as u64);
        let (out, grads) = eval_grads(|a| conv2d(a[0], a[1], case.2), &x_w);
        let (want_out, want) = eval_grads(|a| a[0].conv2d(a[1], case.2, 1, 1, 1), &x_w);
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-4);
        assert_close(&format!("{case:?} dx"), &grads[0], &want[0], 1e-4);
        assert_close(&format!("{case:?} dw"), &grads[1], &want[1], 1e-4);
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let x_w = inputs(&([1, 2, 4, 3], [3, 2, 3, 3], 1), 7);
    check_finite_differences(|a| conv2d(a[0], a[1], 1), &x_w);
    let x_w = inputs(&([2, 3, 3, 2], [2, 3, 1, 1], 0), 8);
    check_finite_differences(|a| conv2d(a[0], a[1], 0), &x_w);
}

#[test]
fn conv2d_accepts_non_contiguous_input() {
    let x = rand_tensor(11, &[2, 5, 9, 7]).transpose(2, 3).unwrap();
    let w = rand_tensor(12, &[4, 5, 3, 3]);
    assert!(!x.is_contiguous());
    let got = to_vec(&conv2d(&x, &w, 1).unwrap());
    let want = to_vec(&conv2d(&x.contiguous().unwrap(), &w, 1).unwrap());
    assert_eq!(got, want);
}

#[test]
fn conv2d_constant_input_gets_no_gradient() {
    let x = rand_tensor(13, &[2, 3, 6, 6]);
    let w = Var::from_tensor(&rand_tensor(14, &[4, 3, 3, 3])).unwrap();
    let out = conv2d(&x, &w, 1).unwrap();
    let grads = out.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    let want = x.conv2d(&w, 1, 1, 1, 1).unwrap().sum_all().unwrap();
    let want = want.backward().unwrap();
    let (got, want) = (grads.get(&w).unwrap(), want.get(&w).unwrap());
    assert_close("dw", &to_vec(got), &to_vec(want), 1e-4);
}

#[test]
fn conv2d_falls_back_for_f64() {
    let x = Tensor::from_vec(rand_vec(15, 2 * 3 * 5 * 5), (2, 3, 5, 5), &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F64))
        .unwrap();
    let w = rand_tensor(16, &[4, 3, 3, 3]).to_dtype(DType::F64).unwrap();
    let got = conv2d(&x, &w, 1).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let want = x.conv2d(&w, 1, 1, 1, 1).unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let t = |shape: &[usize]| rand_tensor(17, shape);
    assert!(conv2d(&t(&[3, 5, 5]), &t(&[4, 3, 3, 3]), 1).is_err());
    assert!(conv2d(&t(&[1, 3, 5, 5]), &t(&[4, 3, 3]), 1).is_err());
    assert!(conv2d(&t(&[1, 3, 5, 5]), &t(&[4, 2, 3, 3]), 1).is_err());
    assert!(conv2d(&t(&[1, 3, 2, 5]), &t(&[4, 3, 3, 3]), 0).is_err());
    assert!(conv2d(&t(&[0, 3, 5, 5]), &t(&[4, 3, 3, 3]), 1).is_err());
}

#[test]
fn conv2d_bias_matches_naive_reference() {
    for (seed, case) in CASES.iter().enumerate() {
        let [x, w] = inputs(case, 200 + seed as u64);
        let b = rand_tensor(300 + seed as u64, &[case.1[0]]);
        let args = [x.clone(), w.clone(), b.clone()];
        let (out, grads) = eval_grads(|a| conv2d_bias(a[0], a[1], a[2], case.2), &args);
        let [out0, want_dx, want_dw] = naive(&to_vec(&x), case.0, &to_vec(&w), case.1, case.2);
        let (bias, dy) = (to_vec(&b), loss_weights(out0.len()));
        let plane = out0.len() / case.0[0] / bias.len();
        let channel = |i: usize| (i / plane) % bias.len();
        let want_out: Vec<f32> = out0
            .iter()
            .enumerate()
            .map(|(i, o)| o + bias[channel(i)])
            .collect();
        let mut want_db = vec![0f64; bias.len()];
        dy.iter()
            .enumerate()
            .for_each(|(i, &d)| want_db[channel(i)] += d as f64);
        let want_db: Vec<f32> = want_db.into_iter().map(|v| v as f32).collect();
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-4);
        assert_close(&format!("{case:?} dx"), &grads[0], &want_dx, 1e-4);
        assert_close(&format!("{case:?} dw"), &grads[1], &want_dw, 1e-4);
        assert_close(&format!("{case:?} db"), &grads[2], &want_db, 1e-4);
    }
}

#[test]
fn conv2d_bias_matches_candle() {
    for (seed, case) in CASES.iter().enumerate() {
        let [x, w] = inputs(case, 400 + seed as u64);
        let args = [x, w, rand_tensor(500 + seed as u64, &[case.1[0]])];
        let (out, grads) = eval_grads(|a| conv2d_bias(a[0], a[1], a[2], case.2), &args);
        let stock = |a: &[&Tensor]| {
            let bias = a[2].reshape((1, (), 1, 1))?;
            a[0].conv2d(a[1], case.2, 1, 1, 1)?.broadcast_add(&bias)
        };
        let (want_out, want) = eval_grads(stock, &args);
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-4);
        for (k, what) in ["dx", "dw", "db"].iter().enumerate() {
            assert_close(&format!("{case:?} {what}"), &grads[k], &want[k], 1e-4);
        }
    }
}

#[test]
fn conv2d_bias_gradients_match_finite_differences() {
    let [x, w] = inputs(&([1, 2, 4, 3], [3, 2, 3, 3], 1), 600);
    let b = rand_tensor(601, &[3]);
    check_finite_differences(|a| conv2d_bias(a[0], a[1], a[2], 1), &[x, w, b]);
}

#[test]
fn conv2d_bias_falls_back_for_f64_and_checks_the_bias() {
    let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
    let [x, w] = inputs(&([2, 3, 5, 5], [4, 3, 3, 3], 1), 602).map(f64s);
    let b = f64s(rand_tensor(603, &[4]));
    let got = conv2d_bias(&x, &w, &b, 1).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let want = x
        .conv2d(&w, 1, 1, 1, 1)
        .unwrap()
        .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
        .unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    assert!(conv2d_bias(&x, &w, &b.narrow(0, 0, 3).unwrap(), 1).is_err());
}

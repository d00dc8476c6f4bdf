use crate::common::{
    assert_close, check_finite_differences, eval_grads, loss_weights, rand_tensor, to_vec,
};
use candle_core::{DType, Tensor};
use radlens_kernels::{conv_transpose2d_2x2, conv_transpose2d_2x2_bias};

/// (input shape, output channels)
const CASES: &[([usize; 4], usize)] = &[
    ([1, 3, 7, 5], 5),
    ([2, 13, 4, 3], 8),
    ([3, 5, 2, 6], 13),
    ([4, 16, 8, 8], 8),
];

/// Naive transposed convolution and the gradients of `sum(out * dy)`, accumulated in f64.
fn naive(x: &[f32], [n, cin, h, w]: [usize; 4], wt: &[f32], cout: usize) -> [Vec<f32>; 3] {
    let dy = loss_weights(n * cout * 4 * h * w);
    let mut out = vec![0f64; dy.len()];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; wt.len()];
    for b in 0..n {
        for ci in 0..cin {
            for i in 0..h {
                for j in 0..w {
                    let xi = ((b * cin + ci) * h + i) * w + j;
                    for co in 0..cout {
                        for a in 0..2 {
                            for c in 0..2 {
                                let o = ((b * cout + co) * 2 * h + 2 * i + a) * 2 * w + 2 * j + c;
                                let wi = ((ci * cout + co) * 2 + a) * 2 + c;
                                out[o] += x[xi] as f64 * wt[wi] as f64;
                                dx[xi] += wt[wi] as f64 * dy[o] as f64;
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

fn inputs(xs: [usize; 4], cout: usize, seed: u64) -> [Tensor; 2] {
    [
        rand_tensor(seed, &xs),
        rand_tensor(seed + 1, &[xs[1], cout, 2, 2]),
    ]
}

#[test]
fn conv_transpose_matches_naive_reference() {
    for (seed, &(xs, cout)) in CASES.iter().enumerate() {
        let [x, w] = inputs(xs, cout, seed as u64);
        let (out, grads) = eval_grads(
            |a| conv_transpose2d_2x2(a[0], a[1]),
            &[x.clone(), w.clone()],
        );
        let [want_out, want_dx, want_dw] = naive(&to_vec(&x), xs, &to_vec(&w), cout);
        assert_close(&format!("{xs:?} out"), &out, &want_out, 1e-4);
        assert_close(&format!("{xs:?} dx"), &grads[0], &want_dx, 1e-4);
        assert_close(&format!("{xs:?} dw"), &grads[1], &want_dw, 1e-4);
    }
}

#[test]
fn conv_transpose_matches_candle() {
    for (seed, &(xs, cout)) in CASES.iter().enumerate() {
        let x_w = inputs(xs, cout, 100 + seed as u64);
        let (out, grads) = eval_grads(|a| conv_transpose2d_2x2(a[0], a[1]), &x_w);
        let stock = |a: &[&Tensor]| a[0].conv_transpose2d(a[1], 0, 0, 2, 1);
        let (want_out, want) = eval_grads(stock, &x_w);
        assert_close(&format!("{xs:?} out"), &out, &want_out, 1e-4);
        assert_close(&format!("{xs:?} dx"), &grads[0], &want[0], 1e-4);
        assert_close(&format!("{xs:?} dw"), &grads[1], &want[1], 1e-4);
    }
}

#[test]
fn conv_transpose_gradients_match_finite_differences() {
    let x_w = inputs([2, 3, 2, 3], 2, 7);
    check_finite_differences(|a| conv_transpose2d_2x2(a[0], a[1]), &x_w);
}

#[test]
fn conv_transpose_accepts_non_contiguous_input() {
    let x = rand_tensor(11, &[2, 5, 6, 3]).transpose(2, 3).unwrap();
    let w = rand_tensor(12, &[5, 4, 2, 2]);
    let got = to_vec(&conv_transpose2d_2x2(&x, &w).unwrap());
    let want = to_vec(&conv_transpose2d_2x2(&x.contiguous().unwrap(), &w).unwrap());
    assert_eq!(got, want);
}

#[test]
fn conv_transpose_falls_back_for_f64() {
    let x = rand_tensor(13, &[2, 3, 4, 5]).to_dtype(DType::F64).unwrap();
    let w = rand_tensor(14, &[3, 4, 2, 2]).to_dtype(DType::F64).unwrap();
    let got = conv_transpose2d_2x2(&x, &w).unwrap();
    assert_eq!(got.dims(), &[2, 4, 8, 10]);
    let want = x.conv_transpose2d(&w, 0, 0, 2, 1).unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
}

#[test]
fn conv_transpose_rejects_bad_shapes() {
    let t = |shape: &[usize]| rand_tensor(15, shape);
    assert!(conv_transpose2d_2x2(&t(&[3, 4, 4]), &t(&[3, 2, 2, 2])).is_err());
    assert!(conv_transpose2d_2x2(&t(&[1, 3, 4, 4]), &t(&[2, 2, 2, 2])).is_err());
    assert!(conv_transpose2d_2x2(&t(&[1, 3, 4, 4]), &t(&[3, 2, 3, 3])).is_err());
}

#[test]
fn conv_transpose_bias_matches_candle() {
    for (seed, &(xs, cout)) in CASES.iter().enumerate() {
        let [x, w] = inputs(xs, cout, 200 + seed as u64);
        let args = [x, w, rand_tensor(300 + seed as u64, &[cout])];
        let (out, grads) = eval_grads(|a| conv_transpose2d_2x2_bias(a[0], a[1], a[2]), &args);
        let stock = |a: &[&Tensor]| {
            let bias = a[2].reshape((1, (), 1, 1))?;
            a[0].conv_transpose2d(a[1], 0, 0, 2, 1)?
                .broadcast_add(&bias)
        };
        let (want_out, want) = eval_grads(stock, &args);
        assert_close(&format!("{xs:?} out"), &out, &want_out, 1e-4);
        for (k, what) in ["dx", "dw", "db"].iter().enumerate() {
            assert_close(&format!("{xs:?} {what}"), &grads[k], &want[k], 1e-4);
        }
    }
}

#[test]
fn conv_transpose_bias_gradients_match_finite_differences() {
    let [x, w] = inputs([2, 3, 2, 3], 2, 17);
    let args = [x, w, rand_tensor(18, &[2])];
    check_finite_differences(|a| conv_transpose2d_2x2_bias(a[0], a[1], a[2]), &args);
}

#[test]
fn conv_transpose_bias_falls_back_for_f64_and_checks_the_bias() {
    let f64s = |t: Tensor| t.to_dtype(DType::F64).unwrap();
    let [x, w] = inputs([1, 3, 4, 5], 2, 19).map(f64s);
    let b = f64s(rand_tensor(20, &[2]));
    let got = conv_transpose2d_2x2_bias(&x, &w, &b).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let want = x
        .conv_transpose2d(&w, 0, 0, 2, 1)
        .unwrap()
        .broadcast_add(&b.reshape((1, 2, 1, 1)).unwrap())
        .unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    assert!(conv_transpose2d_2x2_bias(&x, &w, &b.narrow(0, 0, 1).unwrap()).is_err());
}

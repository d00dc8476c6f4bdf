use crate::common::{
    assert_close, check_finite_differences, eval_grads, loss_weights, rand_tensor, to_vec,
};
use crate::group_norm::naive_forward as naive_group_norm;
use candle_core::{DType, Result, Tensor, Var};
use radlens_kernels::{conv2d_bias, conv2d_group_norm_relu, group_norm};

const EPS: f64 = 1e-5;

/// (input shape, weight shape, padding, groups): batch 1, odd sizes, 5 and 6 channels.
type Case = ([usize; 4], [usize; 4], usize, usize);

const CASES: &[Case] = &[
    ([1, 3, 7, 5], [6, 3, 3, 3], 1, 3),
    ([2, 8, 6, 6], [5, 8, 3, 3], 1, 5),
    ([3, 4, 5, 4], [8, 4, 3, 3], 0, 2),
    ([2, 6, 4, 5], [4, 6, 1, 1], 0, 1),
];

fn inputs(case: &Case, seed: u64) -> [Tensor; 5] {
    let c = case.1[0];
    [
        rand_tensor(seed, &case.0),
        rand_tensor(seed + 1, &case.1),
        rand_tensor(seed + 2, &[c]),
        rand_tensor(seed + 3, &[c]),
        rand_tensor(seed + 4, &[c]),
    ]
}

fn fused(case: &Case) -> impl Fn(&[&Tensor]) -> Result<Tensor> + '_ {
    |a| conv2d_group_norm_relu(a[0], a[1], a[2], a[3], a[4], case.2, case.3, EPS)
}

/// Naive f64 forward: direct convolution loops, bias, then the naive GroupNorm and ReLU.
fn naive_forward(inp: &[Vec<f64>], case: &Case) -> Vec<f64> {
    let ([n, cin, h, w], [cout, _, kh, kw], p, groups) = *case;
    let (ho, wo) = (h + 2 * p - kh + 1, w + 2 * p - kw + 1);
    let mut t = vec![0f64; n * cout * ho * wo];
    for (o, t) in t.iter_mut().enumerate() {
        let (b, co, oy, ox) = (
            o / (cout * ho * wo),
            (o / (ho * wo)) % cout,
            (o / wo) % ho,
            o % wo,
        );
        *t = inp[2][co];
        for ci in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (iy, ix) = (oy + ky, ox + kx);
                    if iy >= p && ix >= p && iy - p < h && ix - p < w {
                        let xv = inp[0][((b * cin + ci) * h + iy - p) * w + ix - p];
                        *t += xv * inp[1][((co * cin + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
    }
    naive_group_norm(&t, &[n, cout, ho, wo], &inp[3], &inp[4], groups, true)
}

#[test]
fn conv_norm_matches_naive_reference() {
    for (seed, case) in CASES.iter().enumerate() {
        let args = inputs(case, 10 * seed as u64);
        let (out, grads) = eval_grads(fused(case), &args);
        let mut inp: Vec<Vec<f64>> = args
            .iter()
            .map(|t| to_vec(t).iter().map(|&v| v as f64).collect())
            .collect();
        let want = naive_forward(&inp, case);
        let want_out: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-5);
        // gradients of sum(out * R) by f64 central differences of the naive forward
        let r = loss_weights(want.len());
        let loss = |inp: &[Vec<f64>]| -> f64 {
            naive_forward(inp, case)
                .iter()
                .zip(&r)
                .map(|(o, &r)| o * r as f64)
                .sum()
        };
        for (k, grad) in grads.iter().enumerate() {
            let numeric: Vec<f32> = (0..inp[k].len())
                .map(|j| {
                    inp[k][j] += 1e-6;
                    let up = loss(&inp);
                    inp[k][j] -= 2e-6;
                    let down = loss(&inp);
                    inp[k][j] += 1e-6;
                    ((up - down) / 2e-6) as f32
                })
                .collect();
            assert_close(&format!("{case:?} grad {k}"), grad, &numeric, 1e-4);
        }
    }
}

#[test]
fn conv_norm_matches_candle() {
    for (seed, case) in CASES.iter().enumerate() {
        let args = inputs(case, 100 + 10 * seed as u64);
        let (out, grads) = eval_grads(fused(case), &args);
        let stock = |a: &[&Tensor]| {
            let y = a[0]
                .conv2d(a[1], case.2, 1, 1, 1)?
                .broadcast_add(&a[2].reshape((1, (), 1, 1))?)?;
            let (n, c, h, w) = y.dims4()?;
            let ys = y.reshape((n, case.3, ()))?;
            let centred = ys.broadcast_sub(&ys.mean_keepdim(2)?)?;
            let var = centred.sqr()?.mean_keepdim(2)?;
            let normed = centred
                .broadcast_div(&(var + EPS)?.sqrt()?)?
                .reshape((n, c, h, w))?;
            normed
                .broadcast_mul(&a[3].reshape((1, c, 1, 1))?)?
                .broadcast_add(&a[4].reshape((1, c, 1, 1))?)?
                .relu()
        };
        let (want_out, want) = eval_grads(stock, &args);
        assert_close(&format!("{case:?} out"), &out, &want_out, 1e-4);
        for k in 0..5 {
            assert_close(&format!("{case:?} grad {k}"), &grads[k], &want[k], 1e-4);
        }
        // and the separate radlens ops
        let separate = |a: &[&Tensor]| {
            group_norm(
                &conv2d_bias(a[0], a[1], a[2], case.2)?,
                a[3],
                a[4],
                case.3,
                EPS,
                true,
            )
        };
        let (sep_out, sep) = eval_grads(separate, &args);
        assert_close(&format!("{case:?} separate out"), &out, &sep_out, 1e-5);
        for k in 0..5 {
            assert_close(
                &format!("{case:?} separate grad {k}"),
                &grads[k],
                &sep[k],
                1e-5,
            );
        }
    }
}

#[test]
fn conv_norm_gradients_match_finite_differences() {
    let case = ([1, 2, 4, 3], [4, 2, 3, 3], 1, 2);
    check_finite_differences(fused(&case), &inputs(&case, 7));
}

#[test]
fn conv_norm_backward_twice_and_untracked_input() {
    let case = ([2, 3, 5, 5], [4, 3, 3, 3], 1, 2);
    let [x, w, b, g, be] = inputs(&case, 8);
    let vars = [&w, &b, &g, &be].map(|t| Var::from_tensor(t).unwrap());
    let y = conv2d_group_norm_relu(&x, &vars[0], &vars[1], &vars[2], &vars[3], 1, 2, EPS).unwrap();
    let loss = y.sqr().unwrap().sum_all().unwrap();
    let first = loss.backward().unwrap();
    let second = loss.backward().unwrap();
    assert!(first.get(&x).is_none());
    for v in &vars {
        assert_eq!(
            to_vec(first.get(v).unwrap()),
            to_vec(second.get(v).unwrap())
        );
    }
}

#[test]
fn conv_norm_falls_back_for_f64_and_checks_shapes() {
    let case = ([2, 3, 5, 4], [6, 3, 3, 3], 1, 3);
    let f64s = inputs(&case, 9).map(|t| t.to_dtype(DType::F64).unwrap());
    let a: Vec<&Tensor> = f64s.iter().collect();
    let got = fused(&case)(&a).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let f32s = inputs(&case, 9);
    let want = fused(&case)(&f32s.iter().collect::<Vec<_>>()).unwrap();
    assert_close(
        "f64",
        &to_vec(&got.to_dtype(DType::F32).unwrap()),
        &to_vec(&want),
        1e-5,
    );
    let [x, w, b, g, be] = inputs(&case, 10);
    assert!(
        conv2d_group_norm_relu(&x, &w, &b.narrow(0, 0, 5).unwrap(), &g, &be, 1, 3, EPS).is_err()
    );
    assert!(conv2d_group_norm_relu(&x, &w, &b, &g, &be, 1, 4, EPS).is_err());
    assert!(
        conv2d_group_norm_relu(&x, &w, &b, &g.narrow(0, 0, 5).unwrap(), &be, 1, 3, EPS).is_err()
    );
}

use crate::common::{assert_close, check_finite_differences, eval_grads, rand_tensor, to_vec};
use candle_core::{DType, Device, Tensor, D};
use radlens_kernels::antithetic_log_likelihood;

/// (S, B, C, R, P): batch 1, odd pixel counts, 2 to 5 classes, rank 1 to 4, several pixel
/// blocks, and more classes than the kernel handles (the stock-op fallback).
const CASES: &[[usize; 5]] = &[
    [1, 1, 2, 1, 3],
    [3, 2, 4, 2, 7],
    [2, 3, 5, 3, 5],
    [5, 2, 3, 4, 16],
    [2, 2, 4, 2, 150],
    [2, 1, 17, 2, 5],
];

/// Seeded mean (B,C,P), factor (B,C,R,P), scale (B,C,P), noise z (S,B,R) and e (S,B,C,P),
/// and a one-hot (B,C,P) of pseudo-random labels.
fn inputs([s, b, c, r, p]: [usize; 5], seed: u64) -> [Tensor; 6] {
    let mut oh = vec![0f32; b * c * p];
    for i in 0..b * p {
        let (bi, px) = (i / p, i % p);
        oh[(bi * c + (i * 7 + seed as usize) % c) * p + px] = 1.0;
    }
    let onehot = Tensor::from_vec(oh, (b, c, p), &Device::Cpu).unwrap();
    let mean = (rand_tensor(seed, &[b, c, p]) * 3.0).unwrap();
    let scale = (rand_tensor(seed + 1, &[b, c, p]).abs().unwrap() + 0.1).unwrap();
    [
        mean,
        rand_tensor(seed + 2, &[b, c, r, p]),
        scale,
        rand_tensor(seed + 3, &[s, b, r]),
        rand_tensor(seed + 4, &[s, b, c, p]),
        onehot,
    ]
}

/// The kernel on `[mean, factor, scale]` with the fixed noise and labels of `fixed`.
fn kernel(a: &[&Tensor], fixed: &[Tensor; 6]) -> candle_core::Result<Tensor> {
    antithetic_log_likelihood(a[0], a[1], a[2], (&fixed[3], &fixed[4]), &fixed[5])
}

/// Naive f64 loops over samples, items and pixels.
fn naive([s, b, c, r, p]: [usize; 5], t: &[Tensor; 6]) -> Vec<f32> {
    let [mean, factor, scale, z, e, y] = t.each_ref().map(to_vec);
    let mut out = vec![0f32; 2 * s * b];
    for (k, out) in out.iter_mut().enumerate() {
        let (sign, si, bi) = (if k < s * b { 1.0 } else { -1.0 }, (k / b) % s, k % b);
        let mut ll = 0f64;
        for px in 0..p {
            let logit = |ci: usize| {
                let i = (bi * c + ci) * p + px;
                let low_rank: f64 = (0..r)
                    .map(|q| {
                        factor[((bi * c + ci) * r + q) * p + px] as f64
                            * z[(si * b + bi) * r + q] as f64
                    })
                    .sum();
                let dev = low_rank + scale[i] as f64 * e[si * b * c * p + i] as f64;
                mean[i] as f64 + sign * dev
            };
            let lse = (0..c).map(|ci| logit(ci).exp()).sum::<f64>().ln();
            ll += (0..c)
                .map(|ci| y[(bi * c + ci) * p + px] as f64 * (logit(ci) - lse))
                .sum::<f64>();
        }
        *out = ll as f32;
    }
    out
}

#[test]
fn ssn_log_likelihood_matches_naive_reference() {
    for (seed, &shape) in CASES.iter().enumerate() {
        let t = inputs(shape, seed as u64);
        let got = to_vec(&kernel(&[&t[0], &t[1], &t[2]], &t).unwrap());
        assert_close(&format!("{shape:?}"), &got, &naive(shape, &t), 1e-5);
    }
}

#[test]
fn ssn_log_likelihood_matches_candle() {
    // The composition of the SSN loss in radlens-seg: deviations, cat of mean +- dev,
    // log-softmax, product.
    for (seed, &shape) in CASES.iter().enumerate() {
        let t = inputs(shape, 100 + seed as u64);
        let [s, b, c, r, p] = shape;
        let diff = [t[0].clone(), t[1].clone(), t[2].clone()];
        let (out, grads) = eval_grads(|a| kernel(a, &t), &diff);
        let stock = |a: &[&Tensor]| {
            let f = a[1].permute((0, 1, 3, 2))?.reshape((b, c * p, r))?;
            let low_rank = f.matmul(&t[3].permute((1, 2, 0))?)?.permute((2, 0, 1))?;
            let dev = (low_rank.reshape((s, b, c, p))? + t[4].broadcast_mul(a[2])?)?;
            let mu = a[0].unsqueeze(0)?;
            let samples = Tensor::cat(&[mu.broadcast_add(&dev)?, mu.broadcast_sub(&dev)?], 0)?;
            let shifted = samples.broadcast_sub(&samples.max_keepdim(2)?)?;
            let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(2)?.log()?)?;
            logp.broadcast_mul(&t[5].unsqueeze(0)?)?
                .sum(D::Minus1)?
                .sum(D::Minus1)
        };
        let (want_out, want) = eval_grads(stock, &diff);
        assert_close(&format!("{shape:?} out"), &out, &want_out, 1e-5);
        for (i, what) in ["dmean", "dfactor", "dscale"].iter().enumerate() {
            assert_close(&format!("{shape:?} {what}"), &grads[i], &want[i], 1e-5);
        }
    }
}

#[test]
fn ssn_log_likelihood_gradients_match_finite_differences() {
    for shape in [[2, 2, 3, 2, 4], [1, 1, 17, 1, 2]] {
        let t = inputs(shape, 7);
        let diff = [t[0].clone(), t[1].clone(), t[2].clone()];
        check_finite_differences(|a| kernel(a, &t), &diff);
    }
}

#[test]
fn ssn_log_likelihood_falls_back_for_f64_and_checks_shapes() {
    let shape = [3, 2, 4, 2, 5];
    let t = inputs(shape, 8);
    let f64s = t.each_ref().map(|t| t.to_dtype(DType::F64).unwrap());
    let got = kernel(&[&f64s[0], &f64s[1], &f64s[2]], &f64s).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let want = to_vec(&kernel(&[&t[0], &t[1], &t[2]], &t).unwrap());
    let got = to_vec(&got.to_dtype(DType::F32).unwrap());
    assert_close("f64", &got, &want, 1e-5);
    let [m, f, sc, z, e, y] = &t;
    let bad = |m: &Tensor, f: &Tensor, z: &Tensor, e: &Tensor, y: &Tensor| {
        antithetic_log_likelihood(m, f, sc, (z, e), y).is_err()
    };
    assert!(bad(m, f, z, &e.narrow(1, 0, 1).unwrap(), y));
    assert!(bad(m, f, z, e, &y.narrow(2, 0, 4).unwrap()));
    assert!(bad(&m.unsqueeze(0).unwrap(), f, z, e, y));
    assert!(bad(m, &f.narrow(2, 0, 1).unwrap(), z, e, y));
    assert!(bad(m, f, &z.narrow(2, 0, 1).unwrap(), e, y));
}

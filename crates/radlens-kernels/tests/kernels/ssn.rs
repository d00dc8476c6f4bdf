use crate::common::{assert_close, check_finite_differences, eval_grads, rand_tensor, to_vec};
use candle_core::{DType, Device, Tensor, D};
use radlens_kernels::antithetic_log_likelihood;

/// (S, B, C, P): batch 1, odd pixel counts, 2 to 5 classes, several pixel blocks.
const CASES: &[[usize; 4]] = &[
    [1, 1, 2, 3],
    [3, 2, 4, 7],
    [2, 3, 5, 5],
    [5, 2, 3, 16],
    [2, 2, 4, 150],
];

/// Seeded mean (B,C,P), deviations (S,B,C,P) and a one-hot (B,C,P) of pseudo-random labels.
fn inputs([s, b, c, p]: [usize; 4], seed: u64) -> [Tensor; 3] {
    let mut oh = vec![0f32; b * c * p];
    for i in 0..b * p {
        let (bi, px) = (i / p, i % p);
        oh[(bi * c + (i * 7 + seed as usize) % c) * p + px] = 1.0;
    }
    let onehot = Tensor::from_vec(oh, (b, c, p), &Device::Cpu).unwrap();
    let mean = (rand_tensor(seed, &[b, c, p]) * 3.0).unwrap();
    [mean, rand_tensor(seed + 1, &[s, b, c, p]), onehot]
}

/// Naive f64 loops over samples, items and pixels.
fn naive([s, b, c, p]: [usize; 4], mean: &[f32], dev: &[f32], y: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; 2 * s * b];
    for (k, out) in out.iter_mut().enumerate() {
        let (sign, si, bi) = (if k < s * b { 1.0 } else { -1.0 }, (k / b) % s, k % b);
        let mut ll = 0f64;
        for px in 0..p {
            let logit = |ci: usize| {
                let i = (bi * c + ci) * p + px;
                mean[i] as f64 + sign * dev[si * b * c * p + i] as f64
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
        let [m, d, y] = inputs(shape, seed as u64);
        let got = to_vec(&antithetic_log_likelihood(&m, &d, &y).unwrap());
        let want = naive(shape, &to_vec(&m), &to_vec(&d), &to_vec(&y));
        assert_close(&format!("{shape:?}"), &got, &want, 1e-5);
    }
}

#[test]
fn ssn_log_likelihood_matches_candle() {
    // The composition of the SSN loss in radlens-seg: cat of mean +- dev, log-softmax, product.
    for (seed, &shape) in CASES.iter().enumerate() {
        let [m, d, y] = inputs(shape, 100 + seed as u64);
        let (out, grads) = eval_grads(
            |a| antithetic_log_likelihood(a[0], a[1], &y),
            &[m.clone(), d.clone()],
        );
        let stock = |a: &[&Tensor]| {
            let mu = a[0].unsqueeze(0)?;
            let samples = Tensor::cat(&[mu.broadcast_add(a[1])?, mu.broadcast_sub(a[1])?], 0)?;
            let shifted = samples.broadcast_sub(&samples.max_keepdim(2)?)?;
            let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(2)?.log()?)?;
            logp.broadcast_mul(&y.unsqueeze(0)?)?
                .sum(D::Minus1)?
                .sum(D::Minus1)
        };
        let (want_out, want) = eval_grads(stock, &[m, d]);
        assert_close(&format!("{shape:?} out"), &out, &want_out, 1e-5);
        assert_close(&format!("{shape:?} dmean"), &grads[0], &want[0], 1e-5);
        assert_close(&format!("{shape:?} ddev"), &grads[1], &want[1], 1e-5);
    }
}

#[test]
fn ssn_log_likelihood_gradients_match_finite_differences() {
    let [m, d, y] = inputs([2, 2, 3, 4], 7);
    check_finite_differences(|a| antithetic_log_likelihood(a[0], a[1], &y), &[m, d]);
}

#[test]
fn ssn_log_likelihood_falls_back_for_f64_and_checks_shapes() {
    let shape = [3, 2, 4, 5];
    let f64s = inputs(shape, 8).map(|t| t.to_dtype(DType::F64).unwrap());
    let got = antithetic_log_likelihood(&f64s[0], &f64s[1], &f64s[2]).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let [m, d, y] = inputs(shape, 8);
    let want = to_vec(&antithetic_log_likelihood(&m, &d, &y).unwrap());
    assert_close(
        "f64",
        &to_vec(&got.to_dtype(DType::F32).unwrap()),
        &want,
        1e-5,
    );
    assert!(antithetic_log_likelihood(&m, &d.narrow(1, 0, 1).unwrap(), &y).is_err());
    assert!(antithetic_log_likelihood(&m, &d, &y.narrow(2, 0, 4).unwrap()).is_err());
    assert!(antithetic_log_likelihood(&m.unsqueeze(0).unwrap(), &d, &y).is_err());
}

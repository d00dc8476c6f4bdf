//! Shared helpers: seeded data, gradient evaluation and tolerant comparisons.

use candle_core::{Device, Result, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Seed of the random weighting `R` of the scalar loss `sum(out * R)`.
const LOSS_SEED: u64 = 0x5eed;

/// `len` uniform values in [-1, 1) from a generator seeded with `seed`.
pub fn rand_vec(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// The loss weighting for an output of `len` elements.
pub fn loss_weights(len: usize) -> Vec<f32> {
    rand_vec(LOSS_SEED, len)
}

/// A seeded random f32 CPU tensor.
pub fn rand_tensor(seed: u64, shape: &[usize]) -> Tensor {
    let len = shape.iter().product();
    Tensor::from_vec(rand_vec(seed, len), shape, &Device::Cpu).unwrap()
}

pub fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Output of `op` and the gradients of `sum(op(inputs) * R)` with respect to each input.
pub fn eval_grads(
    op: impl Fn(&[&Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let args: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let out = op(&args).unwrap();
    let r = Tensor::from_vec(loss_weights(out.elem_count()), out.shape(), &Device::Cpu).unwrap();
    let grads = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let input_grads = args
        .iter()
        .map(|a| to_vec(grads.get(a).expect("missing gradient")))
        .collect();
    (to_vec(&out), input_grads)
}

/// Asserts `max |got - want| <= tol * max(1, max |want|)`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length mismatch");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

/// Checks the analytic gradients of `sum(op(inputs) * R)` against central differences,
/// accumulating the loss in f64.
pub fn check_finite_differences(op: impl Fn(&[&Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    const EPS: f32 = 1e-2;
    let (out, grads) = eval_grads(&op, inputs);
    let r = loss_weights(out.len());
    let loss = |inputs: &[Tensor]| -> f64 {
        let args: Vec<&Tensor> = inputs.iter().collect();
        let out = to_vec(&op(&args).unwrap());
        out.iter().zip(&r).map(|(&o, &r)| o as f64 * r as f64).sum()
    };
    for (k, grad) in grads.iter().enumerate() {
        let base = to_vec(&inputs[k]);
        for (j, &analytic) in grad.iter().enumerate() {
            let perturbed = |delta: f32| {
                let mut data = base.clone();
                data[j] += delta;
                let mut inputs = inputs.to_vec();
                inputs[k] = Tensor::from_vec(data, inputs[k].shape(), &Device::Cpu).unwrap();
                loss(&inputs)
            };
            let numeric = (perturbed(EPS) - perturbed(-EPS)) / (2.0 * EPS as f64);
            assert!(
                (numeric - analytic as f64).abs() <= 1e-2 * (1.0 + numeric.abs()),
                "input {k} element {j}: analytic {analytic}, numeric {numeric}"
            );
        }
    }
}

//! Tests of the sparse SAE ops against naive/dense references and finite differences.

use candle_core::{Device, Result, Tensor, Var};
use radlens_kernels::sparse::{
    above_threshold, batch_topk, bias_relu, scatter_dense, sparse_decode, sparse_encode,
    sparse_prefix_mse, topk_per_row, SparseIndex,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn rand_vec(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn tensor(seed: u64, shape: &[usize]) -> Tensor {
    Tensor::from_vec(rand_vec(seed, shape.iter().product()), shape, &Device::Cpu).unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn entries(idx: &SparseIndex) -> Vec<(usize, usize)> {
    (0..idx.rows())
        .flat_map(|r| idx.row_cols(r).iter().map(move |&c| (r, c as usize)))
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Values quantised to a few levels so that ties occur.
fn tied(seed: u64, rows: usize, cols: usize) -> (Tensor, Vec<f32>) {
    let v: Vec<f32> = rand_vec(seed, rows * cols)
        .into_iter()
        .map(|x| (x * 8.0).round() / 8.0)
        .collect();
    (
        Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).unwrap(),
        v,
    )
}

#[test]
fn batch_topk_matches_sorting() {
    let (rows, cols) = (7, 13);
    let (t, v) = tied(1, rows, cols);
    for n in [0, 1, 5, 30, 60, rows * cols, rows * cols + 5] {
        let idx = batch_topk(&t, n).unwrap();
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
        let mut want: Vec<(usize, usize)> = order[..n.min(v.len())]
            .iter()
            .map(|&i| (i / cols, i % cols))
            .collect();
        want.sort();
        assert_eq!(entries(&idx), want, "n = {n}");
        assert_eq!(idx.nnz(), n.min(rows * cols));
    }
}

#[test]
fn batch_topk_matches_sorting_on_large_inputs() {
    // Large enough for the sampled lower bound; coarse values give many ties.
    let (rows, cols) = (256, 4096);
    let v: Vec<f32> = rand_vec(4, rows * cols)
        .into_iter()
        .map(|x| (x * 512.0).round() / 512.0)
        .collect();
    let t = Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).unwrap();
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    for n in [1, rows * 32, rows * cols / 3] {
        let idx = batch_topk(&t, n).unwrap();
        let mut want: Vec<(usize, usize)> =
            order[..n].iter().map(|&i| (i / cols, i % cols)).collect();
        want.sort();
        assert_eq!(entries(&idx), want, "n = {n}");
    }
}

#[test]
fn topk_per_row_matches_sorting() {
    let (rows, cols, k) = (5, 11, 3);
    let (t, v) = tied(2, rows, cols);
    let allowed: Vec<bool> = (0..cols).map(|c| c % 3 != 0).collect();
    for mask in [None, Some(allowed.as_slice())] {
        let idx = topk_per_row(&t, k, mask).unwrap();
        for r in 0..rows {
            let mut cand: Vec<usize> = (0..cols).filter(|&c| mask.is_none_or(|m| m[c])).collect();
            cand.sort_by(|&a, &b| v[r * cols + b].total_cmp(&v[r * cols + a]).then(a.cmp(&b)));
            let mut want: Vec<u32> = cand[..k].iter().map(|&c| c as u32).collect();
            want.sort();
            assert_eq!(idx.row_cols(r), want.as_slice(), "row {r}");
        }
    }
    assert!(topk_per_row(&t, k, Some(&[true; 3])).is_err());
}

#[test]
fn above_threshold_and_scatter_match_dense() {
    let t = tensor(3, &[6, 9]);
    let idx = above_threshold(&t, 0.25).unwrap();
    let vals: Vec<f32> = entries(&idx)
        .iter()
        .map(|&(r, c)| to_vec(&t)[r * 9 + c])
        .collect();
    let dense = scatter_dense(&Tensor::new(vals.as_slice(), &Device::Cpu).unwrap(), &idx).unwrap();
    let want: Vec<f32> = to_vec(&t)
        .into_iter()
        .map(|x| if x > 0.25 { x } else { 0.0 })
        .collect();
    assert_eq!(to_vec(&dense), want);
}

#[test]
fn index_rejects_bad_input() {
    assert!(SparseIndex::from_rows(4, vec![vec![1, 1]]).is_err());
    assert!(SparseIndex::from_rows(4, vec![vec![4]]).is_err());
    let idx = SparseIndex::from_rows(4, vec![vec![3, 0], vec![]]).unwrap();
    assert_eq!(idx.row_cols(0), &[0, 3]);
    let bad = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(scatter_dense(&bad, &idx).is_err());
}

/// Gradients of `sum(f(vars) * r)` for a seeded weighting `r`.
fn grads(f: impl Fn(&[&Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> (f64, Vec<Vec<f32>>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let args: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let out = f(&args).unwrap();
    let r = Tensor::from_vec(rand_vec(99, out.elem_count()), out.shape(), &Device::Cpu).unwrap();
    let loss = (&out * &r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let value = loss.to_scalar::<f32>().unwrap() as f64;
    (
        value,
        args.iter().map(|a| to_vec(g.get(a).unwrap())).collect(),
    )
}

/// Central differences of `sum(f(inputs) * r)` in f64 against the analytic gradients.
fn check_fd(f: impl Fn(&[&Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    const EPS: f32 = 1e-2;
    let (_, analytic) = grads(&f, inputs);
    let loss = |inputs: &[Tensor]| {
        let args: Vec<&Tensor> = inputs.iter().collect();
        let out = to_vec(&f(&args).unwrap());
        let r = rand_vec(99, out.len());
        out.iter()
            .zip(&r)
            .map(|(&o, &r)| o as f64 * r as f64)
            .sum::<f64>()
    };
    for (i, input) in inputs.iter().enumerate() {
        let base = to_vec(input);
        let mut numeric = vec![0f32; base.len()];
        for (j, num) in numeric.iter_mut().enumerate() {
            let at = |delta: f32| {
                let mut v = base.clone();
                v[j] += delta;
                let mut ins = inputs.to_vec();
                ins[i] = Tensor::from_vec(v, input.shape(), &Device::Cpu).unwrap();
                loss(&ins)
            };
            *num = ((at(EPS) - at(-EPS)) / (2.0 * EPS as f64)) as f32;
        }
        assert_close(&format!("input {i}"), &analytic[i], &numeric, 2e-2);
    }
}

fn encode_setup() -> (Vec<Tensor>, SparseIndex) {
    let (b, d, f) = (5, 4, 9);
    let x = tensor(10, &[b, d]);
    let w = tensor(11, &[d, f]);
    let bias = (tensor(12, &[f]) * 0.5).unwrap();
    let pre = x.matmul(&w).unwrap().broadcast_add(&bias).unwrap();
    let idx = batch_topk(&pre, 12).unwrap();
    (vec![x, w, bias], idx)
}

#[test]
fn sparse_encode_matches_dense_and_finite_differences() {
    let (inputs, idx) = encode_setup();
    let sparse = |a: &[&Tensor]| sparse_encode(a[0], a[1], a[2], &idx);
    // Dense reference: relu(x w + b) gathered at the entries, via a one-hot weighting.
    let dense = |a: &[&Tensor]| {
        let pre = a[0].matmul(a[1])?.broadcast_add(a[2])?.relu()?;
        let rows: Vec<Tensor> = entries(&idx)
            .iter()
            .map(|&(r, c)| pre.get(r)?.get(c))
            .collect::<Result<_>>()?;
        Tensor::stack(&rows, 0)
    };
    let (ls, gs) = grads(sparse, &inputs);
    let (ld, gd) = grads(dense, &inputs);
    assert!((ls - ld).abs() < 1e-4 * ld.abs().max(1.0), "{ls} vs {ld}");
    for (i, (s, d)) in gs.iter().zip(&gd).enumerate() {
        assert_close(&format!("grad {i}"), s, d, 1e-5);
    }
    check_fd(sparse, &inputs);
}

#[test]
fn sparse_decode_matches_dense_and_finite_differences() {
    let (b, d, f) = (6, 5, 10);
    let pre = tensor(20, &[b, f]);
    let idx = topk_per_row(&pre, 3, None).unwrap();
    let values = tensor(21, &[idx.nnz()]);
    let w = tensor(22, &[f, d]);
    for cols in [0..f, 2..7, 4..4] {
        let sparse = |a: &[&Tensor]| sparse_decode(a[0], a[1], &idx, cols.clone());
        let dense = |a: &[&Tensor]| {
            let codes = scatter_dense(a[0], &idx)?.narrow(1, cols.start, cols.len())?;
            codes.matmul(&a[1].narrow(0, cols.start, cols.len())?)
        };
        let inputs = [values.clone(), w.clone()];
        let (ls, gs) = grads(sparse, &inputs);
        let (ld, gd) = grads(dense, &inputs);
        assert!((ls - ld).abs() < 1e-4 * ld.abs().max(1.0), "{cols:?}");
        for (i, (s, d)) in gs.iter().zip(&gd).enumerate() {
            assert_close(&format!("{cols:?} grad {i}"), s, d, 1e-5);
        }
        check_fd(sparse, &inputs);
    }
    assert!(sparse_decode(&values, &w, &idx, 3..f + 1).is_err());
}

#[test]
fn scatter_dense_gradient_gathers() {
    let idx = SparseIndex::from_rows(5, vec![vec![0, 4], vec![2], vec![]]).unwrap();
    check_fd(|a| scatter_dense(a[0], &idx), &[tensor(30, &[3])]);
}

#[test]
fn sparse_prefix_mse_matches_composition_and_finite_differences() {
    let (b, d, f) = (6, 5, 12);
    let pre = tensor(40, &[b, f]);
    let idx = batch_topk(&pre, 20).unwrap();
    let inputs = [
        tensor(41, &[b, d]),
        tensor(42, &[idx.nnz()]),
        tensor(43, &[f, d]),
    ];
    for ends in [vec![2, 5, 12], vec![12], vec![3, 3, 9]] {
        let fused = |a: &[&Tensor]| sparse_prefix_mse(a[0], a[1], a[2], &idx, &ends);
        let composed = |a: &[&Tensor]| {
            let mut start = 0;
            let mut res = a[0].clone();
            let mut losses = Vec::new();
            for &end in &ends {
                res = (res - sparse_decode(a[1], a[2], &idx, start..end)?)?;
                losses.push(res.sqr()?.sum(1)?.mean(0)?);
                start = end;
            }
            Tensor::stack(&losses, 0)
        };
        let (lf, gf) = grads(fused, &inputs);
        let (lc, gc) = grads(composed, &inputs);
        assert!(
            (lf - lc).abs() < 1e-5 * lc.abs().max(1.0),
            "{ends:?}: {lf} vs {lc}"
        );
        for (i, (x, y)) in gf.iter().zip(&gc).enumerate() {
            assert_close(&format!("{ends:?} grad {i}"), x, y, 1e-5);
        }
        check_fd(fused, &inputs);
    }
    assert!(sparse_prefix_mse(&inputs[0], &inputs[1], &inputs[2], &idx, &[5, 2]).is_err());
    assert!(sparse_prefix_mse(&inputs[0], &inputs[1], &inputs[2], &idx, &[13]).is_err());
}

#[test]
fn bias_relu_matches_candle() {
    let (z, b) = (tensor(50, &[7, 33]), tensor(51, &[33]));
    let want = to_vec(&z.broadcast_add(&b).unwrap().relu().unwrap());
    assert_eq!(to_vec(&bias_relu(&z, &b).unwrap()), want);
    assert!(bias_relu(&z, &tensor(52, &[32])).is_err());
}

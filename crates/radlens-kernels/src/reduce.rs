//! Vectorisable sums: f32 lanes within short blocks, blocks accumulated in f64.

const LANES: usize = 16;
const BLOCK: usize = 1024;

/// `K` sums `sum_i f(a[i], b[i])[k]` over two equally long slices, in one pass.
pub(crate) fn sums2<const K: usize>(
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> [f32; K],
) -> [f64; K] {
    debug_assert_eq!(a.len(), b.len());
    let mut total = [0f64; K];
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [[0f32; LANES]; K];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let mut tail = [0f32; K];
        for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
            let v = f(x, y);
            (0..K).for_each(|k| tail[k] += v[k]);
        }
        for (x, y) in ca.zip(cb) {
            for l in 0..LANES {
                let v = f(x[l], y[l]);
                (0..K).for_each(|k| acc[k][l] += v[k]);
            }
        }
        for k in 0..K {
            total[k] += acc[k].iter().map(|&v| v as f64).sum::<f64>() + tail[k] as f64;
        }
    }
    total
}

/// `sum_i f(a[i])`.
pub(crate) fn sum1(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sums2(a, a, |x, _| [f(x)])[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_f64_loops() {
        for len in [0usize, 1, 15, 16, 17, 1023, 1024, 1025, 5000] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 3.0)
                .collect();
            let want1: f64 = a.iter().map(|&x| (x * x) as f64).sum();
            let want2: f64 = a.iter().zip(&b).map(|(&x, &y)| (x * y) as f64).sum();
            assert!(
                (sum1(&a, |x| x * x) - want1).abs() <= 1e-4 * want1.abs().max(1.0),
                "{len}"
            );
            let [s1, s2] = sums2(&a, &b, |x, y| [x * x, x * y]);
            assert!((s1 - want1).abs() <= 1e-4 * want1.abs().max(1.0), "{len}");
            assert!((s2 - want2).abs() <= 1e-4 * want2.abs().max(1.0), "{len}");
        }
    }
}

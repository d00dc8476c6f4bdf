//! Vectorisable sums: f32 lanes within short blocks, blocks accumulated in f64.

const LANES: usize = 16;
const BLOCK: usize = 1024;

/// `sum_i f(a[i], b[i])` over two equally long slices.
pub(crate) fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut total = 0f64;
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| f(x, y))
            .sum();
        for (x, y) in ca.zip(cb) {
            for l in 0..LANES {
                acc[l] += f(x[l], y[l]);
            }
        }
        total += acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// `sum_i f(a[i])`.
pub(crate) fn sum1(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum2(a, a, |x, _| f(x))
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
            assert!(
                (sum2(&a, &b, |x, y| x * y) - want2).abs() <= 1e-4 * want2.abs().max(1.0),
                "{len}"
            );
        }
    }
}

//! Minimum-cost perfect matching of a square cost matrix (the Hungarian method with
//! potentials, O(n^3)), for Hungarian-matched IoU.

/// For an n x n `cost` (row-major), the column assigned to each row so that the total
/// cost is smallest.
pub fn min_cost_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "cost matrix is not {n} x {n}");
    // 1-based potentials u (rows), v (columns); way[j] = previous column on the
    // shortest augmenting path; matched[j] = row matched to column j (0: none).
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut matched, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for row in 1..=n {
        matched[0] = row;
        let mut j0 = 0;
        let mut min_to = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = matched[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let reduced = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[matched[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if matched[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            matched[j0] = matched[j1];
            j0 = j1;
        }
    }
    let mut assigned = vec![0; n];
    for j in 1..=n {
        assigned[matched[j] - 1] = j - 1;
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn total(cost: &[f64], n: usize, a: &[usize]) -> f64 {
        a.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum()
    }

    /// Every permutation of 0..n (Heap's algorithm), for the brute-force optimum.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        fn heap(k: usize, p: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(p.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, p, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                p.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(n, &mut (0..n).collect(), &mut out);
        out
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..=6 {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n).map(|_| rng.gen_range(0..10) as f64).collect();
                let a = min_cost_assignment(&cost, n);
                let mut seen = a.clone();
                seen.sort();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "not a permutation");
                let best = permutations(n)
                    .iter()
                    .map(|p| total(&cost, n, p))
                    .fold(f64::INFINITY, f64::min);
                assert_eq!(total(&cost, n, &a), best, "{cost:?}");
            }
        }
    }

    #[test]
    fn hand_computed_case() {
        // rows prefer the same column; the optimum gives it to row 1
        let cost = [1.0, 2.0, 0.0, 5.0];
        assert_eq!(min_cost_assignment(&cost, 2), vec![1, 0]);
    }
}

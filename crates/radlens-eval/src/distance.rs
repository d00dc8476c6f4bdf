//! Surface distances (HD95, ASSD) via an exact Euclidean distance transform
//! with anisotropic pixel spacing (Felzenszwalb & Huttenlocher, 2012).

/// Distances between the boundaries of two masks, in the spacing's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurfaceDistances {
    /// 95th percentile of the pooled boundary-to-boundary distances (both directions).
    pub hd95: f64,
    /// Average symmetric surface distance: mean of the two directed mean distances.
    pub assd: f64,
    /// Maximum distance (classic Hausdorff).
    pub hausdorff: f64,
}

/// Stands in for "no seed" inside the transform; far above any real squared distance.
const FAR: f64 = 1e30;

/// 1D squared distance transform of `f` with sample spacing `step` (lower envelope of parabolas).
fn edt_1d(f: &[f64], step: f64, out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let s2 = step * step;
    let key = |q: usize| f[q] + s2 * (q * q) as f64;
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s;
        loop {
            let p = v[k];
            s = (key(q) - key(p)) / (2.0 * s2 * (q - p) as f64);
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                break;
            }
        }
        if s <= z[k] {
            v[0] = q; // k == 0: the new parabola is lowest everywhere so far
        } else {
            k += 1;
            v[k] = q;
            z[k] = s;
        }
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let d = (q as f64 - v[k] as f64) * step;
        *o = d * d + f[v[k]];
    }
}

/// Euclidean distance from every pixel to the nearest `true` pixel of `seeds`
/// (`row_mm` vertical, `col_mm` horizontal spacing). Infinite when there is no seed.
pub fn distance_transform(
    seeds: &[bool],
    width: usize,
    height: usize,
    row_mm: f64,
    col_mm: f64,
) -> Vec<f64> {
    let mut g: Vec<f64> = seeds.iter().map(|&s| if s { 0.0 } else { FAR }).collect();
    let n = width.max(height);
    let (mut v, mut z, mut out) = (vec![0usize; n], vec![0f64; n + 1], vec![0f64; n]);
    let mut col = vec![0f64; height];
    for x in 0..width {
        for y in 0..height {
            col[y] = g[y * width + x];
        }
        edt_1d(&col, row_mm, &mut out[..height], &mut v, &mut z);
        for y in 0..height {
            g[y * width + x] = out[y];
        }
    }
    for y in 0..height {
        let row = g[y * width..(y + 1) * width].to_vec();
        edt_1d(&row, col_mm, &mut out[..width], &mut v, &mut z);
        g[y * width..(y + 1) * width].copy_from_slice(&out[..width]);
    }
    g.into_iter()
        .map(|d| {
            if d >= FAR / 2.0 {
                f64::INFINITY
            } else {
                d.sqrt()
            }
        })
        .collect()
}

/// Boundary pixels: foreground pixels with a 4-neighbour outside the mask or on the image edge.
pub fn boundary(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let mut b = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if !mask[i] {
                continue;
            }
            let edge = x == 0 || y == 0 || x + 1 == width || y + 1 == height;
            b[i] = edge || !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
        }
    }
    b
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    // linear interpolation between closest ranks (numpy's default)
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The smallest box `[x0, x1) x [y0, y1)` holding every true pixel of `a` and `b`.
fn bounding_box(a: &[bool], b: &[bool], width: usize) -> Option<[usize; 4]> {
    let mut bbox: Option<[usize; 4]> = None;
    for (i, _) in a.iter().zip(b).enumerate().filter(|(_, (&p, &q))| p || q) {
        let (x, y) = (i % width, i / width);
        bbox = Some(match bbox {
            None => [x, y, x + 1, y + 1],
            Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)],
        });
    }
    bbox
}

/// HD95, ASSD and Hausdorff distance between the boundaries of `a` and `b`.
/// `None` when either mask is empty (the distances are undefined).
///
/// The distance transforms run on the box around both masks only: every boundary
/// pixel lies inside it, so the distances are exact, and an organ's box is a
/// fraction of a film.
pub fn surface_distances(
    a: &[bool],
    b: &[bool],
    width: usize,
    height: usize,
    row_mm: f64,
    col_mm: f64,
) -> Option<SurfaceDistances> {
    let (ba, bb) = (boundary(a, width, height), boundary(b, width, height));
    if !ba.iter().any(|&x| x) || !bb.iter().any(|&x| x) {
        return None;
    }
    let [x0, y0, x1, y1] = bounding_box(a, b, width)?;
    let crop = |m: &[bool]| -> Vec<bool> {
        (y0..y1)
            .flat_map(|y| m[y * width + x0..y * width + x1].iter().copied())
            .collect()
    };
    let (ba, bb) = (crop(&ba), crop(&bb));
    let (w, h) = (x1 - x0, y1 - y0);
    let (da, db) = (
        distance_transform(&ba, w, h, row_mm, col_mm),
        distance_transform(&bb, w, h, row_mm, col_mm),
    );
    let a_to_b: Vec<f64> = (0..ba.len()).filter(|&i| ba[i]).map(|i| db[i]).collect();
    let b_to_a: Vec<f64> = (0..bb.len()).filter(|&i| bb[i]).map(|i| da[i]).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let assd = (mean(&a_to_b) + mean(&b_to_a)) / 2.0;
    let mut all: Vec<f64> = a_to_b.into_iter().chain(b_to_a).collect();
    all.sort_by(f64::total_cmp);
    Some(SurfaceDistances {
        hd95: percentile(&all, 95.0),
        assd,
        hausdorff: *all.last().expect("non-empty"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn brute(seeds: &[bool], w: usize, h: usize, ry: f64, cx: f64) -> Vec<f64> {
        (0..w * h)
            .map(|i| {
                (0..w * h)
                    .filter(|&j| seeds[j])
                    .map(|j| {
                        let dy = (i / w) as f64 - (j / w) as f64;
                        let dx = (i % w) as f64 - (j % w) as f64;
                        ((dy * ry).powi(2) + (dx * cx).powi(2)).sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn edt_matches_brute_force_with_anisotropic_spacing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for &(w, h, density) in &[(13, 7, 0.05), (9, 11, 0.3), (6, 6, 0.0), (1, 5, 0.5)] {
            let seeds: Vec<bool> = (0..w * h).map(|_| rng.gen_bool(density)).collect();
            let fast = distance_transform(&seeds, w, h, 0.7, 0.35);
            let slow = brute(&seeds, w, h, 0.7, 0.35);
            for (a, b) in fast.iter().zip(&slow) {
                assert!(a == b || (a - b).abs() < 1e-9, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn shifted_square_by_hand() {
        // two 4x4 squares in a 10x10 grid, one shifted right by 2 pixels
        let sq = |x0: usize| -> Vec<bool> {
            (0..100)
                .map(|i| (3..7).contains(&(i / 10)) && (x0..x0 + 4).contains(&(i % 10)))
                .collect()
        };
        let d = surface_distances(&sq(2), &sq(4), 10, 10, 1.0, 0.5).unwrap();
        // boundary of A: 12 pixels. Left column of A (x=2) is 2 px = 1.0 mm from B's
        // boundary; every other A boundary pixel lies on/near B's boundary.
        assert!((d.hausdorff - 1.0).abs() < 1e-12, "{d:?}");
        assert!(d.hd95 <= 1.0 && d.hd95 > 0.0);
        assert!(surface_distances(&sq(2), &[false; 100], 10, 10, 1.0, 1.0).is_none());
        let same = surface_distances(&sq(2), &sq(2), 10, 10, 1.0, 1.0).unwrap();
        assert_eq!((same.hd95, same.assd), (0.0, 0.0));
    }

    /// Blobs in a corner of a larger film, one touching the film's edge: the
    /// distances equal brute force over every pair of boundary pixels.
    #[test]
    fn distances_match_brute_force_over_boundary_pairs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (w, h) = (40, 30);
        for _ in 0..5 {
            let blob = |rng: &mut rand::rngs::StdRng, x0: usize, y0: usize| -> Vec<bool> {
                let (rx, ry) = (rng.gen_range(2.0..6.0), rng.gen_range(2.0..6.0));
                (0..w * h)
                    .map(|i| {
                        let (x, y) = ((i % w) as f64 - x0 as f64, (i / w) as f64 - y0 as f64);
                        (x / rx).powi(2) + (y / ry).powi(2) <= 1.0
                    })
                    .collect()
            };
            let a = blob(&mut rng, 8, 10);
            let b = blob(&mut rng, 0, 12); // cut by the film's left edge
            let (ba, bb) = (boundary(&a, w, h), boundary(&b, w, h));
            let dist = |i: usize, j: usize| {
                let dy = (i / w) as f64 - (j / w) as f64;
                let dx = (i % w) as f64 - (j % w) as f64;
                ((dy * 0.7).powi(2) + (dx * 0.35).powi(2)).sqrt()
            };
            let directed = |from: &[bool], to: &[bool]| -> Vec<f64> {
                (0..w * h)
                    .filter(|&i| from[i])
                    .map(|i| {
                        (0..w * h)
                            .filter(|&j| to[j])
                            .map(|j| dist(i, j))
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect()
            };
            let (ab, ba_) = (directed(&ba, &bb), directed(&bb, &ba));
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let mut all: Vec<f64> = ab.iter().chain(&ba_).copied().collect();
            all.sort_by(f64::total_cmp);
            let d = surface_distances(&a, &b, w, h, 0.7, 0.35).unwrap();
            assert!(
                (d.assd - (mean(&ab) + mean(&ba_)) / 2.0).abs() < 1e-9,
                "{d:?}"
            );
            assert!((d.hd95 - percentile(&all, 95.0)).abs() < 1e-9, "{d:?}");
            assert!((d.hausdorff - all[all.len() - 1]).abs() < 1e-9, "{d:?}");
        }
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((percentile(&v, 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&v, 50.0), 3.0);
    }
}

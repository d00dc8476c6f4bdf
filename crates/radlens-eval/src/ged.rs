//! Distribution metrics for stochastic segmentation (as in the SSN reference
//! code): distance d(a, b) = 1 - IoU averaged over foreground classes, where a
//! class empty in both masks counts as IoU 1.

/// 1 - mean IoU over `classes` between two label maps (one pass over the pixels).
pub fn label_distance(a: &[u8], b: &[u8], classes: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "label maps differ in size");
    let mut inter = [0usize; 256];
    let mut count_a = [0usize; 256];
    let mut count_b = [0usize; 256];
    for (&x, &y) in a.iter().zip(b) {
        count_a[x as usize] += 1;
        count_b[y as usize] += 1;
        if x == y {
            inter[x as usize] += 1;
        }
    }
    let mean_iou = classes
        .iter()
        .map(|&c| {
            let c = c as usize;
            let union = count_a[c] + count_b[c] - inter[c];
            if union == 0 {
                1.0
            } else {
                inter[c] as f64 / union as f64
            }
        })
        .sum::<f64>()
        / classes.len().max(1) as f64;
    1.0 - mean_iou
}

/// GED^2 and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GedResult {
    /// GED^2 = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')].
    pub ged_squared: f64,
    /// E[d(S, Y)]: mean sample-to-reference distance.
    pub cross: f64,
    /// E[d(S, S')] over distinct pairs: the sample diversity.
    pub diversity: f64,
    /// E[d(Y, Y')] over distinct pairs of references (0 with one annotator).
    pub reference_spread: f64,
}

fn mean_pairwise(maps: &[&[u8]], classes: &[u8]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for i in 0..maps.len() {
        for j in (i + 1)..maps.len() {
            sum += label_distance(maps[i], maps[j], classes);
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Generalised energy distance between samples and references (distinct pairs within each set).
pub fn generalized_energy_distance(
    samples: &[&[u8]],
    references: &[&[u8]],
    classes: &[u8],
) -> GedResult {
    let mut cross = 0.0;
    for s in samples {
        for r in references {
            cross += label_distance(s, r, classes);
        }
    }
    cross /= (samples.len() * references.len()).max(1) as f64;
    let diversity = mean_pairwise(samples, classes);
    let reference_spread = mean_pairwise(references, classes);
    GedResult {
        ged_squared: 2.0 * cross - diversity - reference_spread,
        cross,
        diversity,
        reference_spread,
    }
}

/// Hungarian-matched IoU (Kohl et al. 2019, as in Flow-SSN): both sets are repeated
/// to their least common multiple size, each sample is matched one-to-one to a
/// reference so that the summed IoU (1 - [`label_distance`]) is largest, and the
/// matched IoUs are averaged. With one reference it is the mean sample IoU.
pub fn hungarian_matched_iou(samples: &[&[u8]], references: &[&[u8]], classes: &[u8]) -> f64 {
    let (s, r) = (samples.len(), references.len());
    assert!(s > 0 && r > 0, "HM-IoU needs samples and references");
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let n = s / gcd(s, r) * r;
    let distance: Vec<f64> = samples
        .iter()
        .flat_map(|a| references.iter().map(|b| label_distance(a, b, classes)))
        .collect();
    let cost: Vec<f64> = (0..n * n)
        .map(|k| distance[(k / n % s) * r + k % n % r])
        .collect();
    let matched = crate::assignment::min_cost_assignment(&cost, n);
    let total: f64 = matched
        .iter()
        .enumerate()
        .map(|(i, &j)| 1.0 - cost[i * n + j])
        .sum();
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_ged() {
        let y: &[u8] = &[1, 1, 0, 0];
        let s1: &[u8] = &[1, 1, 0, 0]; // d(s1, y) = 0
        let s2: &[u8] = &[1, 0, 0, 0]; // IoU 1/2 -> d = 0.5
        let g = generalized_energy_distance(&[s1, s2], &[y], &[1]);
        assert!((g.cross - 0.25).abs() < 1e-12);
        assert!((g.diversity - 0.5).abs() < 1e-12);
        assert_eq!(g.reference_spread, 0.0);
        assert!((g.ged_squared - 0.0).abs() < 1e-12);
        // two classes; class 2 empty in both counts as IoU 1
        assert!((label_distance(&[1, 0], &[1, 0], &[1, 2]) - 0.0).abs() < 1e-12);
        assert!((label_distance(&[1, 2], &[1, 0], &[1, 2]) - 0.5).abs() < 1e-12);
        // agrees with the per-class mask definition
        let (a, b): (Vec<u8>, Vec<u8>) = (
            (0..50).map(|i| (i % 3) as u8).collect(),
            (0..50).map(|i| (i % 4 % 3) as u8).collect(),
        );
        let by_masks = 1.0
            - [1u8, 2]
                .iter()
                .map(|&c| {
                    crate::overlap::iou(
                        &crate::overlap::class_mask(&a, c),
                        &crate::overlap::class_mask(&b, c),
                    )
                })
                .sum::<f64>()
                / 2.0;
        assert!((label_distance(&a, &b, &[1, 2]) - by_masks).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_hm_iou() {
        let (y1, y2): (&[u8], &[u8]) = (&[1, 1, 0, 0], &[0, 0, 1, 1]);
        let (s1, s2): (&[u8], &[u8]) = (&[0, 1, 1, 1], &[1, 1, 1, 0]);
        // IoU(s1,y1) 1/4, IoU(s1,y2) 2/3, IoU(s2,y1) 2/3, IoU(s2,y2) 1/4: cross-matched
        let hm = hungarian_matched_iou(&[s1, s2], &[y1, y2], &[1]);
        assert!((hm - 2.0 / 3.0).abs() < 1e-12, "{hm}");
        // one reference: the mean IoU of the samples
        let hm = hungarian_matched_iou(&[s1, s2], &[y1], &[1]);
        assert!((hm - (0.25 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{hm}");
        // 2 samples vs 3 references: 6 x 6; each reference used twice, each sample
        // three times; s1 = y1 exactly, s2 = y3 exactly, y2 matched at IoU 1/2 twice
        let y3: &[u8] = &[0, 0, 0, 1];
        let y2b: &[u8] = &[1, 0, 0, 0];
        let (s1, s2): (&[u8], &[u8]) = (&[1, 1, 0, 0], &[0, 0, 0, 1]);
        let hm = hungarian_matched_iou(&[s1, s2], &[s1, y2b, y3], &[1]);
        // pairs: (s1,y1)=1 x2, (s2,y3)=1 x2, y2b: with s1 IoU 1/2 (one of s1's three
        // copies), with s2 IoU 0 -> best uses s1 for one copy of y2b and s2 for the other
        assert!((hm - (4.0 + 0.5 + 0.0) / 6.0).abs() < 1e-12, "{hm}");
    }
}

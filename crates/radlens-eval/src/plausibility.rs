//! Is a sampled segmentation anatomically plausible? A sample is implausible when,
//! for any structure the reference annotates, the structure is missing, is split into
//! several sizeable pieces, or overlaps the mean prediction with Dice below
//! [`MIN_DICE_TO_MEAN`]. Checked on the raw sample (before any cleaning), since
//! cleaning would hide exactly the fragments this looks for.

use crate::overlap::{class_mask, dice};

/// Below this Dice against the mean prediction a sampled structure has moved or
/// changed shape too far to be an alternative reading of the same film.
pub const MIN_DICE_TO_MEAN: f64 = 0.7;
/// A second 8-connected piece counts as a split once it holds this fraction of the
/// structure's pixels; smaller specks along the boundary are sampling noise.
pub const MIN_FRAGMENT_FRACTION: f64 = 0.02;

/// What is wrong with one sample, if anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleFlaws {
    /// Some structure has no pixel.
    pub missing: bool,
    /// Some structure has a second piece of at least [`MIN_FRAGMENT_FRACTION`].
    pub split: bool,
    /// Some structure has Dice < [`MIN_DICE_TO_MEAN`] against the mean prediction.
    pub far_from_mean: bool,
}

impl SampleFlaws {
    pub fn implausible(&self) -> bool {
        self.missing || self.split || self.far_from_mean
    }
}

/// The flaws of `sample` (a `width` x `height` label map) for `structures`, compared
/// with the `mean` prediction.
pub fn sample_flaws(sample: &[u8], mean: &[u8], width: usize, structures: &[u8]) -> SampleFlaws {
    let mut flaws = SampleFlaws::default();
    for &c in structures {
        let (s, m) = (class_mask(sample, c), class_mask(mean, c));
        let mut sizes = component_sizes(&s, width);
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let area: usize = sizes.iter().sum();
        flaws.missing |= area == 0;
        flaws.split |= sizes
            .get(1)
            .is_some_and(|&second| second as f64 >= MIN_FRAGMENT_FRACTION * area as f64);
        flaws.far_from_mean |= dice(&s, &m) < MIN_DICE_TO_MEAN;
    }
    flaws
}

/// Sizes of the 8-connected components of `mask` (row-major, `width` wide).
pub fn component_sizes(mask: &[bool], width: usize) -> Vec<usize> {
    let height = mask.len() / width.max(1);
    let mut seen = vec![false; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        sizes.push(size);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_by_hand() {
        #[rustfmt::skip]
        let m = [
            true,  false, false, true,
            false, true,  false, true,
            false, false, false, false,
            true,  true,  false, true,
        ];
        let mut s = component_sizes(&m, 4);
        s.sort();
        // the diagonal pair joins (8-connectivity); the right column pair; the
        // bottom-left pair; the lone bottom-right pixel
        assert_eq!(s, vec![1, 2, 2, 2]);
        assert!(component_sizes(&[false; 6], 3).is_empty());
    }

    #[test]
    fn each_flaw_is_found() {
        // 10 x 10: class 1 a 5 x 10 block on the left, class 2 a 3 x 10 block on the right
        let w = 10;
        let mean: Vec<u8> = (0..100)
            .map(|i| match i % w {
                0..=4 => 1,
                7..=9 => 2,
                _ => 0,
            })
            .collect();
        assert_eq!(
            sample_flaws(&mean, &mean, w, &[1, 2]),
            SampleFlaws::default()
        );

        let no_heart: Vec<u8> = mean.iter().map(|&l| if l == 2 { 0 } else { l }).collect();
        let f = sample_flaws(&no_heart, &mean, w, &[1, 2]);
        assert!(f.missing && f.far_from_mean && !f.split);
        // ...but fine when only class 1 is a structure to check
        assert!(!sample_flaws(&no_heart, &mean, w, &[1]).implausible());

        // a 4-pixel island of class 2 (4 / 34 >= 2%) in the background gap
        let mut split = mean.clone();
        for i in [5, 15, 25, 35] {
            split[i] = 2;
        }
        let f = sample_flaws(&split, &mean, w, &[1, 2]);
        assert!(f.split && !f.missing && !f.far_from_mean, "{f:?}");
        // one stray pixel of class 1 (1 / 51 < 2%) is sampling noise
        let mut speck = mean.clone();
        speck[96] = 1;
        assert!(!sample_flaws(&speck, &mean, w, &[1]).implausible());

        // class 1 shrunk to 2 columns: Dice 2*20/(20+50) = 0.571 < 0.7
        let shrunk: Vec<u8> = mean
            .iter()
            .enumerate()
            .map(|(i, &l)| if l == 1 && i % w >= 2 { 0 } else { l })
            .collect();
        let f = sample_flaws(&shrunk, &mean, w, &[1, 2]);
        assert!(f.far_from_mean && !f.missing && !f.split, "{f:?}");
    }
}

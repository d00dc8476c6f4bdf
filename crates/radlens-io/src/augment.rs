//! Training augmentation for chest radiographs: small rotations, scaling and
//! shifts applied jointly to image and labels, plus intensity jitter.
//!
//! There is deliberately no horizontal flip: the patient's right and left are
//! classes, and mirrored anatomy (dextrocardia aside) is not a plausible film.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Ranges of the random transforms (saved with a training config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    pub max_rotation_deg: f32,
    /// Isotropic scale drawn from [1 - s, 1 + s].
    pub max_scale: f32,
    /// Shift as a fraction of the side, each axis.
    pub max_shift: f32,
    /// Gamma drawn log-uniformly from [1/g, g].
    pub max_gamma: f32,
    /// Contrast factor from [1 - c, 1 + c] and brightness offset from [-b, b].
    pub max_contrast: f32,
    pub max_brightness: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            max_rotation_deg: 10.0,
            max_scale: 0.1,
            max_shift: 0.06,
            max_gamma: 1.3,
            max_contrast: 0.15,
            max_brightness: 0.08,
        }
    }
}

impl AugmentConfig {
    /// No change at all.
    pub fn none() -> Self {
        Self {
            max_rotation_deg: 0.0,
            max_scale: 0.0,
            max_shift: 0.0,
            max_gamma: 1.0,
            max_contrast: 0.0,
            max_brightness: 0.0,
        }
    }
}

fn sym<R: Rng>(rng: &mut R, r: f32) -> f32 {
    if r > 0.0 {
        rng.gen_range(-r..=r)
    } else {
        0.0
    }
}

/// Augment a square `size` x `size` image with intensities in [0, 1] and its labels.
pub fn augment<R: Rng>(
    img: &[f32],
    labels: &[u8],
    size: usize,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> (Vec<f32>, Vec<u8>) {
    let angle = sym(rng, cfg.max_rotation_deg).to_radians();
    let scale = 1.0 + sym(rng, cfg.max_scale);
    let (tx, ty) = (
        sym(rng, cfg.max_shift) * size as f32,
        sym(rng, cfg.max_shift) * size as f32,
    );
    let gamma = cfg.max_gamma.max(1.0).ln();
    let gamma = sym(rng, gamma).exp();
    let contrast = 1.0 + sym(rng, cfg.max_contrast);
    let brightness = sym(rng, cfg.max_brightness);

    // Inverse map: source = R(-angle) (p - c - t) / scale + c. Rotation and
    // isotropic scaling have positive determinant, so no mirroring can occur.
    let (s, c) = angle.sin_cos();
    let ctr = (size as f32 - 1.0) / 2.0;
    let mut out_img = vec![0f32; size * size];
    let mut out_lab = vec![0u8; size * size];
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 - ctr - tx, y as f32 - ctr - ty);
            let sx = (c * dx + s * dy) / scale + ctr;
            let sy = (-s * dx + c * dy) / scale + ctr;
            let o = y * size + x;
            out_img[o] = bilinear(img, (size, size), sx, sy);
            let (nx, ny) = (sx.round(), sy.round());
            if nx >= 0.0 && ny >= 0.0 && (nx as usize) < size && (ny as usize) < size {
                out_lab[o] = labels[ny as usize * size + nx as usize];
            }
        }
    }
    for v in &mut out_img {
        let g = v.clamp(0.0, 1.0).powf(gamma);
        *v = ((g - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0);
    }
    (out_img, out_lab)
}

/// `img` (`w` x `h`) at the point (x, y), bilinearly; 0 outside.
pub(crate) fn bilinear(img: &[f32], (w, h): (usize, usize), x: f32, y: f32) -> f32 {
    if x < 0.0 || y < 0.0 || x > (w - 1) as f32 || y > (h - 1) as f32 {
        return 0.0;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx: usize, yy: usize| img[yy * w + xx];
    (p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx) * (1.0 - fy)
        + (p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx) * fy
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn identity_config_changes_nothing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let img: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let lab: Vec<u8> = (0..64).map(|i| (i % 3) as u8).collect();
        let (a, b) = augment(&img, &lab, 8, &AugmentConfig::none(), &mut rng);
        for (x, y) in a.iter().zip(&img) {
            assert!((x - y).abs() < 1e-6);
        }
        assert_eq!(b, lab);
    }

    #[test]
    fn never_swaps_patient_left_and_right() {
        // class 1 (patient's right lung) on the image's left, class 2 on its right
        let n = 32;
        let lab: Vec<u8> = (0..n * n)
            .map(|i| {
                let x = i % n;
                if (4..12).contains(&x) {
                    1
                } else if (20..28).contains(&x) {
                    2
                } else {
                    0
                }
            })
            .collect();
        let img: Vec<f32> = lab.iter().map(|&l| l as f32 / 2.0).collect();
        let cfg = AugmentConfig {
            max_rotation_deg: 15.0,
            max_scale: 0.2,
            max_shift: 0.1,
            ..AugmentConfig::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..200 {
            let (_, l) = augment(&img, &lab, n, &cfg, &mut rng);
            let cx = |c: u8| {
                let xs: Vec<usize> = (0..n * n).filter(|&i| l[i] == c).map(|i| i % n).collect();
                xs.iter().sum::<usize>() as f64 / xs.len() as f64
            };
            assert!(cx(1) < cx(2));
        }
    }
}

//! Image perturbations for robustness testing: each at five severities, applied to
//! the radiograph (intensities in [0, 1]) before any preprocessing, drawn from a seed
//! per image so that every model sees the same perturbed film. Only rotation moves
//! anatomy, so only rotation transforms the label map too.
//!
//! Spatial sizes (blur sigma) are given for a 1024-pixel film and scaled with the
//! image's longer side. Levels follow the corruption benchmarks' habit (Hendrycks &
//! Dietterich 2019): level 1 barely visible, level 5 a film a radiologist would
//! still read but reject as poor.

use crate::augment::bilinear;
use crate::error::{IoError, Result};
use crate::{LabelMap, XrayImage};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};

/// Severity levels per perturbation.
pub const LEVELS: usize = 5;

/// A kind of perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Perturbation {
    /// Additive Gaussian noise, sigma on [0, 1] intensities.
    GaussianNoise,
    /// Photon (shot) noise: Poisson(x * photons) / photons.
    PoissonNoise,
    /// Gaussian blur, sigma in pixels of a 1024-pixel film.
    GaussianBlur,
    /// Contrast scaled about the mean by a factor < 1.
    ContrastDown,
    /// Contrast scaled about the mean by a factor > 1 (clipped to [0, 1]).
    ContrastUp,
    /// An added offset.
    Brightness,
    /// x^gamma with gamma < 1 (brighter mid-tones).
    GammaDown,
    /// x^gamma with gamma > 1 (darker mid-tones).
    GammaUp,
    /// JPEG compression at the given quality.
    Jpeg,
    /// Down-sampled by a factor, then up-sampled back (bilinear both ways).
    Resample,
    /// A smooth multiplicative field exp(p(x, y)), p a random polynomial of order 3
    /// on [-1, 1]^2 with coefficients uniform in [-a, a].
    BiasField,
    /// Rotation about the centre by the given degrees (random sign), image bilinear,
    /// labels nearest, outside filled with black and background.
    Rotation,
}

impl Perturbation {
    pub const ALL: [Perturbation; 12] = [
        Perturbation::GaussianNoise,
        Perturbation::PoissonNoise,
        Perturbation::GaussianBlur,
        Perturbation::ContrastDown,
        Perturbation::ContrastUp,
        Perturbation::Brightness,
        Perturbation::GammaDown,
        Perturbation::GammaUp,
        Perturbation::Jpeg,
        Perturbation::Resample,
        Perturbation::BiasField,
        Perturbation::Rotation,
    ];

    /// The name used in results (`gaussian_noise`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Perturbation::GaussianNoise => "gaussian_noise",
            Perturbation::PoissonNoise => "poisson_noise",
            Perturbation::GaussianBlur => "gaussian_blur",
            Perturbation::ContrastDown => "contrast_down",
            Perturbation::ContrastUp => "contrast_up",
            Perturbation::Brightness => "brightness",
            Perturbation::GammaDown => "gamma_down",
            Perturbation::GammaUp => "gamma_up",
            Perturbation::Jpeg => "jpeg",
            Perturbation::Resample => "resample",
            Perturbation::BiasField => "bias_field",
            Perturbation::Rotation => "rotation",
        }
    }

    /// The parameter of each level, 1 (mild) to 5 (severe).
    pub fn params(self) -> [f64; LEVELS] {
        match self {
            Perturbation::GaussianNoise => [0.04, 0.08, 0.12, 0.18, 0.26],
            Perturbation::PoissonNoise => [200.0, 100.0, 50.0, 25.0, 12.0],
            Perturbation::GaussianBlur => [1.0, 2.0, 3.0, 4.0, 6.0],
            Perturbation::ContrastDown => [0.8, 0.65, 0.5, 0.35, 0.2],
            Perturbation::ContrastUp => [1.25, 1.5, 1.75, 2.0, 2.5],
            Perturbation::Brightness => [0.05, 0.1, 0.15, 0.2, 0.3],
            Perturbation::GammaDown => [0.9, 0.775, 0.65, 0.525, 0.4],
            Perturbation::GammaUp => [1.1, 1.225, 1.35, 1.475, 1.6],
            Perturbation::Jpeg => [50.0, 30.0, 15.0, 10.0, 7.0],
            Perturbation::Resample => [0.6, 0.5, 0.4, 0.3, 0.25],
            Perturbation::BiasField => [0.1, 0.2, 0.3, 0.4, 0.5],
            Perturbation::Rotation => [5.0, 10.0, 15.0, 20.0, 30.0],
        }
    }

    /// `img` and its `labels` perturbed at `level` (1..=5) with noise from `seed`.
    pub fn apply(
        self,
        level: usize,
        img: &XrayImage,
        labels: &LabelMap,
        seed: u64,
    ) -> Result<(XrayImage, LabelMap)> {
        if !(1..=LEVELS).contains(&level) {
            return Err(IoError::InvalidArgument(format!(
                "perturbation level {level} is not in 1..={LEVELS}"
            )));
        }
        let p = self.params()[level - 1];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (w, h) = (img.width, img.height);
        let x = &img.pixels;
        let pixels: Vec<f32> = match self {
            Perturbation::GaussianNoise => {
                let noise = Normal::new(0.0, p as f32).expect("sigma > 0");
                x.iter().map(|&v| v + noise.sample(&mut rng)).collect()
            }
            Perturbation::PoissonNoise => x
                .iter()
                .map(|&v| {
                    let rate = v.max(0.0) as f64 * p;
                    if rate > 0.0 {
                        (Poisson::new(rate).expect("rate > 0").sample(&mut rng) / p) as f32
                    } else {
                        0.0
                    }
                })
                .collect(),
            Perturbation::GaussianBlur => gaussian_blur(x, w, h, p * w.max(h) as f64 / 1024.0),
            Perturbation::ContrastDown | Perturbation::ContrastUp => {
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64;
                x.iter()
                    .map(|&v| (mean + (v as f64 - mean) * p) as f32)
                    .collect()
            }
            Perturbation::Brightness => x.iter().map(|&v| v + p as f32).collect(),
            Perturbation::GammaDown | Perturbation::GammaUp => x
                .iter()
                .map(|&v| v.clamp(0.0, 1.0).powf(p as f32))
                .collect(),
            Perturbation::Jpeg => jpeg_round_trip(x, w, h, p as u8)?,
            Perturbation::Resample => resample(x, w, h, p),
            Perturbation::BiasField => {
                // coefficients of x^i y^j, i + j <= 3
                let terms: Vec<(i32, i32, f64)> = (0..=3)
                    .flat_map(|i| (0..=3 - i).map(move |j| (i, j)))
                    .map(|(i, j)| (i, j, rng.gen_range(-p..=p)))
                    .collect();
                x.iter()
                    .enumerate()
                    .map(|(k, &v)| {
                        let u = 2.0 * (k % w) as f64 / (w.max(2) - 1) as f64 - 1.0;
                        let t = 2.0 * (k / w) as f64 / (h.max(2) - 1) as f64 - 1.0;
                        let poly: f64 = terms
                            .iter()
                            .map(|&(i, j, c)| c * u.powi(i) * t.powi(j))
                            .sum();
                        (v as f64 * poly.exp()) as f32
                    })
                    .collect()
            }
            Perturbation::Rotation => {
                let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                return Ok(rotate(img, labels, (sign * p).to_radians() as f32));
            }
        };
        let pixels = pixels.into_iter().map(|v| v.clamp(0.0, 1.0)).collect();
        Ok((
            XrayImage {
                pixels,
                ..img.clone()
            },
            labels.clone(),
        ))
    }
}

/// Separable Gaussian blur (kernel radius 3 sigma, edges clamped).
fn gaussian_blur(x: &[f32], w: usize, h: usize, sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        for y in 0..h {
            for xx in 0..w {
                out[y * w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(i, &kv)| {
                        let d = i as isize - r;
                        let (sx, sy) = if horizontal {
                            ((xx as isize + d).clamp(0, w as isize - 1) as usize, y)
                        } else {
                            (xx, (y as isize + d).clamp(0, h as isize - 1) as usize)
                        };
                        kv * src[sy * w + sx]
                    })
                    .sum();
            }
        }
        out
    };
    pass(&pass(x, true), false)
}

fn to_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

fn jpeg_round_trip(x: &[f32], w: usize, h: usize, quality: u8) -> Result<Vec<f32>> {
    let fail = |e: image::ImageError| {
        IoError::InvalidArgument(format!("JPEG round trip of a {w}x{h} image failed: {e}"))
    };
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(
            &to_bytes(x),
            w as u32,
            h as u32,
            image::ExtendedColorType::L8,
        )
        .map_err(fail)?;
    let back = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .map_err(fail)?
        .into_luma8();
    Ok(back.as_raw().iter().map(|&v| v as f32 / 255.0).collect())
}

fn resample(x: &[f32], w: usize, h: usize, factor: f64) -> Vec<f32> {
    use image::imageops::{resize, FilterType};
    type Grey = image::ImageBuffer<image::Luma<f32>, Vec<f32>>;
    let img = Grey::from_raw(w as u32, h as u32, x.to_vec()).expect("size matches");
    let (sw, sh) = (
        ((w as f64 * factor).round() as u32).max(1),
        ((h as f64 * factor).round() as u32).max(1),
    );
    let small = resize(&img, sw, sh, FilterType::Triangle);
    resize(&small, w as u32, h as u32, FilterType::Triangle).into_raw()
}

/// Rotate image and labels by `angle` radians about the centre.
fn rotate(img: &XrayImage, labels: &LabelMap, angle: f32) -> (XrayImage, LabelMap) {
    let (w, h) = (img.width, img.height);
    let (s, c) = angle.sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut pixels = vec![0f32; w * h];
    let mut out = LabelMap::empty(labels.width, labels.height);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
            pixels[y * w + x] = bilinear(&img.pixels, (w, h), sx, sy);
            let (nx, ny) = (sx.round(), sy.round());
            if nx >= 0.0
                && ny >= 0.0
                && (nx as usize) < labels.width
                && (ny as usize) < labels.height
            {
                out.labels[y * labels.width + x] =
                    labels.labels[ny as usize * labels.width + nx as usize];
            }
        }
    }
    (
        XrayImage {
            pixels,
            ..img.clone()
        },
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> XrayImage {
        let pixels = (0..w * h)
            .map(|i| (i % w) as f32 / (w - 1) as f32)
            .collect();
        XrayImage::new(w, h, pixels).unwrap()
    }

    /// Mid-grey with texture, so that blur, resampling and compression have detail to lose.
    fn textured(w: usize, h: usize) -> XrayImage {
        let pixels = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                0.5 + 0.3 * (x * 0.7).sin() * (y * 0.5).cos()
            })
            .collect();
        XrayImage::new(w, h, pixels).unwrap()
    }

    fn mean(x: &[f32]) -> f64 {
        x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64
    }

    #[test]
    fn every_perturbation_is_seeded_bounded_and_grows_with_level() {
        // blur sigmas are given at 1024 px and scaled to the image: at 256 px level 1 is
        // sigma 0.25 px, still a visible change
        let img = textured(256, 192);
        let labels = LabelMap::empty(256, 192);
        for p in Perturbation::ALL {
            let mut last = 0.0;
            for level in 1..=LEVELS {
                let (a, _) = p.apply(level, &img, &labels, 7).unwrap();
                let (b, _) = p.apply(level, &img, &labels, 7).unwrap();
                assert_eq!(a.pixels, b.pixels, "{p:?} is not reproducible");
                assert!(a.pixels.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
                assert_eq!((a.width, a.height), (256, 192));
                let change: f64 = a
                    .pixels
                    .iter()
                    .zip(&img.pixels)
                    .map(|(x, y)| (x - y).abs() as f64)
                    .sum::<f64>()
                    / img.pixels.len() as f64;
                // seeded random field per level: bias fields need not grow monotonically
                if p != Perturbation::BiasField && p != Perturbation::Rotation {
                    assert!(
                        change >= last - 1e-6,
                        "{p:?} level {level}: {change} < {last}"
                    );
                }
                assert!(change > 0.0, "{p:?} level {level} changes nothing");
                last = change;
            }
        }
        let e = Perturbation::Jpeg
            .apply(0, &img, &labels, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("level 0"), "{e}");
    }

    #[test]
    fn hand_computed_intensity_maps() {
        let img = XrayImage::new(2, 1, vec![0.25, 0.75]).unwrap();
        let labels = LabelMap::empty(2, 1);
        let (c, _) = Perturbation::ContrastDown
            .apply(5, &img, &labels, 0)
            .unwrap();
        // mean 0.5, factor 0.2
        assert!((c.pixels[0] - 0.45).abs() < 1e-6 && (c.pixels[1] - 0.55).abs() < 1e-6);
        let (g, _) = Perturbation::GammaUp.apply(5, &img, &labels, 0).unwrap();
        assert!((g.pixels[0] - 0.25f32.powf(1.6)).abs() < 1e-6);
        let (b, _) = Perturbation::Brightness.apply(5, &img, &labels, 0).unwrap();
        assert_eq!(b.pixels, vec![0.55, 1.0]);
    }

    #[test]
    fn noise_has_the_stated_spread() {
        let img = XrayImage::new(200, 200, vec![0.5; 40000]).unwrap();
        let labels = LabelMap::empty(200, 200);
        let (n, _) = Perturbation::GaussianNoise
            .apply(2, &img, &labels, 3)
            .unwrap();
        let sd = (n
            .pixels
            .iter()
            .map(|&v| (v as f64 - 0.5).powi(2))
            .sum::<f64>()
            / 40000.0)
            .sqrt();
        assert!((sd - 0.08).abs() < 0.002, "{sd}");
        // Poisson(0.5 * 12) / 12: mean 0.5, sd sqrt(0.5 / 12)
        let (n, _) = Perturbation::PoissonNoise
            .apply(5, &img, &labels, 3)
            .unwrap();
        let m = mean(&n.pixels);
        let sd = (n
            .pixels
            .iter()
            .map(|&v| (v as f64 - m).powi(2))
            .sum::<f64>()
            / 40000.0)
            .sqrt();
        assert!(
            (m - 0.5).abs() < 0.005 && (sd - (0.5f64 / 12.0).sqrt()).abs() < 0.005,
            "{m} {sd}"
        );
    }

    #[test]
    fn blur_keeps_the_mean_and_rotation_moves_labels_with_the_image() {
        let img = ramp(32, 32);
        let (b, _) = Perturbation::GaussianBlur
            .apply(5, &img, &LabelMap::empty(32, 32), 0)
            .unwrap();
        assert!((mean(&b.pixels) - mean(&img.pixels)).abs() < 1e-3);
        // a bright square with the same label square: after rotation they still coincide
        let mut pixels = vec![0f32; 64 * 64];
        let mut labels = LabelMap::empty(64, 64);
        for y in 20..44 {
            for x in 10..30 {
                pixels[y * 64 + x] = 1.0;
                labels.labels[y * 64 + x] = 1;
            }
        }
        let img = XrayImage::new(64, 64, pixels).unwrap();
        let (r, l) = Perturbation::Rotation.apply(5, &img, &labels, 4).unwrap();
        assert_ne!(l, labels);
        let agree = (0..64 * 64)
            .filter(|&i| (r.pixels[i] > 0.5) == (l.labels[i] == 1))
            .count();
        assert!(agree as f64 > 0.98 * 4096.0, "{agree}");
    }
}

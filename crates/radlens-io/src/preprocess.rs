//! Preprocessing: letterbox to the model's square input, intensity
//! normalisation, histogram equalisation, and the inverse mapping of model
//! outputs back to the original image grid.

use crate::mask::LabelMap;
use crate::xray::XrayImage;
use image::imageops::{resize, FilterType};
use image::{ImageBuffer, Luma};
use serde::{Deserialize, Serialize};

type GreyF32 = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Intensity preprocessing options (saved with a model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityConfig {
    /// Histogram-equalise before normalising.
    pub equalize: bool,
    /// Gamma correction of the [0, 1] intensities after equalisation, `v^gamma` (as
    /// torchvision's `adjust_gamma`; SemanticGAN's chest X-ray code uses 0.5); 1 is none.
    #[serde(default = "no_gamma")]
    pub gamma: f32,
}

fn no_gamma() -> f32 {
    1.0
}

impl IntensityConfig {
    /// Equalisation as given, no gamma correction.
    pub fn equalized(equalize: bool) -> Self {
        Self {
            equalize,
            gamma: no_gamma(),
        }
    }

    /// Why the options cannot be used, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(format!(
                "intensity: gamma must be a positive number, got {}",
                self.gamma
            ));
        }
        Ok(())
    }
}

/// Where an image of `src` size sits inside the `size` x `size` model input:
/// scaled to fit, aspect ratio kept, centred, zero padded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src: (usize, usize),
    pub size: usize,
    /// Content size inside the square.
    pub content: (usize, usize),
    pub offset: (usize, usize),
}

impl Letterbox {
    /// The letterbox for an image of `src` (w, h) into `size` x `size`.
    pub fn new(src: (usize, usize), size: usize) -> Self {
        let scale = size as f64 / src.0.max(src.1) as f64;
        let cw = ((src.0 as f64 * scale).round() as usize).clamp(1, size);
        let ch = ((src.1 as f64 * scale).round() as usize).clamp(1, size);
        Self {
            src,
            size,
            content: (cw, ch),
            offset: ((size - cw) / 2, (size - ch) / 2),
        }
    }

    /// Resample the image into the square (antialiased), padding with 0.
    pub fn image(&self, img: &XrayImage) -> Vec<f32> {
        let buf = GreyF32::from_raw(img.width as u32, img.height as u32, img.pixels.clone())
            .expect("image buffer size");
        let small = resize(
            &buf,
            self.content.0 as u32,
            self.content.1 as u32,
            FilterType::Triangle,
        );
        self.paste(small.as_raw(), 0.0)
    }

    /// Resample a label map into the square (nearest), padding with background.
    pub fn labels(&self, map: &LabelMap) -> LabelMap {
        let small = map.resize_nearest(self.content.0, self.content.1);
        LabelMap {
            width: self.size,
            height: self.size,
            labels: self.paste(&small.labels, 0),
        }
    }

    fn paste<T: Copy>(&self, content: &[T], fill: T) -> Vec<T> {
        let mut out = vec![fill; self.size * self.size];
        for y in 0..self.content.1 {
            let dst = (y + self.offset.1) * self.size + self.offset.0;
            out[dst..dst + self.content.0]
                .copy_from_slice(&content[y * self.content.0..(y + 1) * self.content.0]);
        }
        out
    }

    /// Map per-class maps (`channels` x size x size) back to the source grid
    /// (`channels` x h x w) by cropping the content and resampling bilinearly.
    pub fn invert_maps(&self, maps: &[f32], channels: usize) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut out = Vec::with_capacity(channels * self.src.0 * self.src.1);
        for c in 0..channels {
            let m = &maps[c * plane..(c + 1) * plane];
            let mut crop = Vec::with_capacity(self.content.0 * self.content.1);
            for y in 0..self.content.1 {
                let row = (y + self.offset.1) * self.size + self.offset.0;
                crop.extend_from_slice(&m[row..row + self.content.0]);
            }
            let buf = GreyF32::from_raw(self.content.0 as u32, self.content.1 as u32, crop)
                .expect("crop size");
            let big = resize(
                &buf,
                self.src.0 as u32,
                self.src.1 as u32,
                FilterType::Triangle,
            );
            out.extend_from_slice(big.as_raw());
        }
        out
    }
    /// The argmax over `channels` maps (`channels` x size x size) resampled bilinearly to
    /// the source grid, as [`Letterbox::invert_maps`] followed by a per-pixel argmax
    /// (ties to the higher channel, as `Iterator::max_by`), without materialising the
    /// `channels` full-size maps: on a 2048-pixel film those are 16 M floats per mask,
    /// and resampling them was a sixth of a robustness sweep.
    pub fn argmax_on_source(&self, maps: &[f32], channels: usize) -> Vec<u8> {
        let (w, h) = self.src;
        let plane = self.size * self.size;
        let xs = bilinear_taps(self.content.0, w);
        let ys = bilinear_taps(self.content.1, h);
        let at = |c: usize, x: usize, y: usize| {
            maps[c * plane + (y + self.offset.1) * self.size + x + self.offset.0]
        };
        // one source row per channel, interpolated vertically, reused along the row
        let mut rows = vec![0f32; channels * self.content.0];
        let mut out = Vec::with_capacity(w * h);
        for &(y0, y1, wy) in &ys {
            for c in 0..channels {
                for x in 0..self.content.0 {
                    rows[c * self.content.0 + x] = (1.0 - wy) * at(c, x, y0) + wy * at(c, x, y1);
                }
            }
            for &(x0, x1, wx) in &xs {
                let mut best = (0u8, f32::NEG_INFINITY);
                for c in 0..channels {
                    let r = &rows[c * self.content.0..];
                    let v = (1.0 - wx) * r[x0] + wx * r[x1];
                    if v >= best.1 {
                        best = (c as u8, v);
                    }
                }
                out.push(best.0);
            }
        }
        out
    }
}

/// For each of `dst` output pixels, the two source pixels of `src` it interpolates
/// and the weight of the second: pixel centres aligned ((x + 0.5) * src / dst - 0.5),
/// clamped at the edges, as `image`'s triangle filter resamples when enlarging.
fn bilinear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|x| {
            let pos = ((x as f64 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f64);
            let x0 = pos.floor() as usize;
            let x1 = (x0 + 1).min(src - 1);
            (x0, x1, (pos - x0 as f64) as f32)
        })
        .collect()
}

/// Zero-mean, unit-variance intensities (over the given pixels).
pub fn standardize(pixels: &mut [f32]) {
    let n = pixels.len().max(1) as f64;
    let mean = pixels.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = pixels
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let sd = var.sqrt().max(1e-6);
    for v in pixels {
        *v = ((*v as f64 - mean) / sd) as f32;
    }
}

/// Histogram equalisation of [0, 1] intensities over 256 bins.
pub fn equalize_histogram(pixels: &mut [f32]) {
    let bin = |v: f32| ((v.clamp(0.0, 1.0) * 255.0).round()) as usize;
    let mut hist = [0usize; 256];
    for &v in pixels.iter() {
        hist[bin(v)] += 1;
    }
    let mut cdf = [0f32; 256];
    let mut acc = 0usize;
    for (c, h) in cdf.iter_mut().zip(hist) {
        acc += h;
        *c = acc as f32 / pixels.len().max(1) as f32;
    }
    for v in pixels {
        *v = cdf[bin(*v)];
    }
}

/// The model input for an image: letterboxed, optionally equalised, standardised.
pub fn model_input(img: &XrayImage, size: usize, cfg: IntensityConfig) -> (Vec<f32>, Letterbox) {
    let lb = Letterbox::new((img.width, img.height), size);
    let mut x = lb.image(img);
    finish_intensity(&mut x, cfg);
    (x, lb)
}

/// Equalise and gamma-correct [0, 1] intensities in place, as configured (the steps
/// before a model's own normalisation).
pub fn adjust_intensity(x: &mut [f32], cfg: IntensityConfig) {
    if cfg.equalize {
        equalize_histogram(x);
    }
    if cfg.gamma != 1.0 {
        x.iter_mut()
            .for_each(|v| *v = v.clamp(0.0, 1.0).powf(cfg.gamma));
    }
}

/// Adjust (as configured) and standardise model-size intensities in place.
pub fn finish_intensity(x: &mut [f32], cfg: IntensityConfig) {
    adjust_intensity(x, cfg);
    standardize(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_follows_equalisation_by_hand() {
        let cfg = IntensityConfig {
            equalize: false,
            gamma: 0.5,
        };
        let mut x = [0.25, 1.0, 0.0, 0.0625];
        adjust_intensity(&mut x, cfg);
        assert_eq!(x, [0.5, 1.0, 0.0, 0.25]);
        // equalised first: four distinct levels become 1/4, 2/4, 3/4, 1, then square roots
        let mut x = [0.9, 0.1, 0.5, 0.3];
        adjust_intensity(
            &mut x,
            IntensityConfig {
                equalize: true,
                ..cfg
            },
        );
        let want = [1.0f32, 0.25, 0.75, 0.5].map(f32::sqrt);
        assert!(
            x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{x:?}"
        );
        // configs from before gamma existed read as no correction; bad values are refused
        let old: IntensityConfig = serde_json::from_str(r#"{"equalize": true}"#).unwrap();
        assert_eq!(old, IntensityConfig::equalized(true));
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let e = IntensityConfig { gamma: bad, ..cfg }
                .validate()
                .unwrap_err();
            assert!(e.contains("gamma"), "{e}");
        }
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn letterbox_geometry_and_inverse() {
        let lb = Letterbox::new((200, 100), 64);
        assert_eq!(lb.content, (64, 32));
        assert_eq!(lb.offset, (0, 16));
        let img = XrayImage::new(200, 100, vec![1.0; 20000]).unwrap();
        let x = lb.image(&img);
        assert_eq!(x[0], 0.0); // padding
        assert!((x[20 * 64 + 5] - 1.0).abs() < 1e-5);
        // a constant map comes back constant at source size
        let back = lb.invert_maps(&vec![0.25; 2 * 64 * 64], 2);
        assert_eq!(back.len(), 2 * 200 * 100);
        assert!(back.iter().all(|v| (v - 0.25).abs() < 1e-5));
    }

    /// The fused resample-and-argmax labels every pixel as resampling each map with
    /// `invert_maps` and taking the argmax does (up to near-ties that float rounding
    /// may break either way), on a letterbox with padding and a random 3-class map.
    #[test]
    fn argmax_on_source_matches_resampling_every_map() {
        let lb = Letterbox::new((37, 23), 16);
        let mut state = 7u64;
        let maps: Vec<f32> = (0..3 * 16 * 16)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let fused = lb.argmax_on_source(&maps, 3);
        let big = lb.invert_maps(&maps, 3);
        let plane = 37 * 23;
        assert_eq!(fused.len(), plane);
        let mut compared = 0;
        for (i, &label) in fused.iter().enumerate() {
            let v: Vec<f32> = (0..3).map(|c| big[c * plane + i]).collect();
            let top = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sorted = v.clone();
            sorted.sort_by(f32::total_cmp);
            if sorted[2] - sorted[1] > 1e-5 {
                assert_eq!(v[label as usize], top, "pixel {i}: {v:?} vs label {label}");
                compared += 1;
            }
        }
        assert!(compared > plane * 99 / 100, "{compared} of {plane}");
    }

    #[test]
    fn labels_follow_the_letterbox() {
        let mut m = LabelMap::empty(4, 2);
        m.labels[0] = 1;
        let lb = Letterbox::new((4, 2), 4);
        let out = lb.labels(&m);
        assert_eq!(out.labels[4], 1); // row 1 (offset 1), col 0
        assert_eq!(out.labels.iter().filter(|&&l| l == 1).count(), 1);
    }

    #[test]
    fn standardize_and_equalize() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0];
        standardize(&mut v);
        let mean: f32 = v.iter().sum::<f32>() / 4.0;
        let var: f32 = v.iter().map(|x| x * x).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        let mut e = vec![0.1, 0.1, 0.2, 0.9];
        equalize_histogram(&mut e);
        assert_eq!(e, vec![0.5, 0.5, 0.75, 1.0]);
    }
}

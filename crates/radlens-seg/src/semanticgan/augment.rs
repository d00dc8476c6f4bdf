//! Differentiable augmentation for small data (Zhao et al. 2020 "DiffAugment"; the
//! geometric and colour groups of StyleGAN2-ADA, at a fixed probability rather than ADA's
//! adaptive one): every discriminator input, real or generated, goes through the same
//! random translation, cutout and (image channel only) brightness/contrast, written with
//! differentiable tensor ops so the generator learns through them. Left-right flips are
//! never used: the patient's sides are classes.

use super::config::DiffAugment;
use crate::error::Result;
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::Rng;

/// Augments `x` (N, C, S, S) whose channel 0 is the image (further channels: class
/// probabilities, moved with it but not recoloured).
pub fn diff_augment(x: &Tensor, cfg: &DiffAugment, rng: &mut StdRng) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut xi = x.narrow(0, i, 1)?;
        if rng.gen_bool(cfg.probability) && cfg.colour > 0.0 {
            let b = rng.gen_range(-cfg.colour..=cfg.colour);
            let k = rng.gen_range(1.0 - cfg.colour..=1.0 + cfg.colour);
            let img = xi.narrow(1, 0, 1)?;
            let mean = img.mean_all()?;
            let img = (img.broadcast_sub(&mean)? * k)?
                .broadcast_add(&mean)?
                .affine(1.0, b)?;
            xi = if c > 1 {
                Tensor::cat(&[&img, &xi.narrow(1, 1, c - 1)?], 1)?
            } else {
                img
            };
        }
        if rng.gen_bool(cfg.probability) && cfg.translation > 0.0 {
            let t = ((h.min(w) as f64 * cfg.translation).round() as usize).max(1);
            let dy = rng.gen_range(0..=2 * t);
            let dx = rng.gen_range(0..=2 * t);
            xi = xi
                .pad_with_zeros(2, t, t)?
                .pad_with_zeros(3, t, t)?
                .narrow(2, dy, h)?
                .narrow(3, dx, w)?;
        }
        if rng.gen_bool(cfg.probability) && cfg.cutout > 0.0 {
            let (ch, cw) = (
                ((h as f64 * cfg.cutout) as usize).max(1),
                ((w as f64 * cfg.cutout) as usize).max(1),
            );
            let (y0, x0) = (rng.gen_range(0..=h - ch), rng.gen_range(0..=w - cw));
            let mask: Vec<f32> = (0..h * w)
                .map(|p| {
                    let (y, x) = (p / w, p % w);
                    let inside = (y0..y0 + ch).contains(&y) && (x0..x0 + cw).contains(&x);
                    if inside {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, (1, 1, h, w), x.device())?;
            xi = xi.broadcast_mul(&mask)?;
        }
        out.push(xi.contiguous()?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn translation_moves_image_and_mask_together_and_keeps_shape() {
        // image channel = a ramp, mask channel = the same ramp: they must stay equal
        let ramp: Vec<f32> = (0..2 * 16 * 16).map(|i| (i % 256) as f32 / 256.0).collect();
        let x = Tensor::from_vec(ramp, (2, 1, 16, 16), &Device::Cpu).unwrap();
        let pair = Tensor::cat(&[&x, &x], 1).unwrap();
        let cfg = DiffAugment {
            probability: 1.0,
            colour: 0.0,
            ..DiffAugment::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let y = diff_augment(&pair, &cfg, &mut rng).unwrap();
        assert_eq!(y.dims(), [2, 2, 16, 16]);
        let a: Vec<f32> = y
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = y
            .narrow(1, 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
        // a 4x4 cutout plus zero fill: at least 16 zeros per sample, and not everything
        let zeros = a[..256].iter().filter(|v| **v == 0.0).count();
        assert!((16..256).contains(&zeros), "{zeros}");
    }

    #[test]
    fn colour_leaves_mask_channels_alone() {
        let x = Tensor::ones((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let cfg = DiffAugment {
            probability: 1.0,
            translation: 0.0,
            cutout: 0.0,
            colour: 0.5,
        };
        let y = diff_augment(&x, &cfg, &mut StdRng::seed_from_u64(3)).unwrap();
        let m: Vec<f32> = y
            .narrow(1, 1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(m.iter().all(|v| *v == 1.0));
        let img: Vec<f32> = y
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(img.iter().all(|v| (*v - img[0]).abs() < 1e-6) && (img[0] - 1.0).abs() > 1e-3);
    }
}

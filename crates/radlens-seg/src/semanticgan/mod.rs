//! SemanticGAN (Li et al., CVPR 2021) on chest radiographs: a StyleGAN2 generator with a
//! label branch that models images and masks jointly, an image discriminator trained on
//! every image and an image-label discriminator trained on labelled pairs, so that
//! unlabelled radiographs also shape the model (semi-supervised).
//!
//! Where radlens departs from the paper's code (see also each module's notes): R1 by a
//! finite-difference Hessian-vector product (`losses`); the modulated convolution in its
//! non-fused form (`layers`); conv + binomial downsampling for strided convolutions
//! (`discriminator`); batch-mean feature matching (`losses`); fixed-probability
//! DiffAugment instead of ADA's adaptive probability (`augment`); no path-length
//! regulariser yet; histogram equalisation without the reference's gamma 0.5; the encoder's
//! backbone and the perceptual distance of inversion (`encoder`, `invert`).

pub mod augment;
pub mod config;
pub mod discriminator;
pub mod encoder;
pub mod encoder_train;
pub mod generator;
pub mod invert;
pub mod layers;
pub mod losses;
pub mod samples;
pub mod train;

pub use config::{GanModelConfig, GanRunConfig, GanTrainConfig};
pub use encoder_train::EncoderLosses;
pub use generator::{Generated, Generator};
pub use invert::{GanSegmenter, Inversion};
pub use train::{train_gan, GanTrainEvent, GanTrainRequest};

#[cfg(test)]
mod tests {
    use super::discriminator::{ImageDiscriminator, PatchDiscriminator};
    use super::*;
    use candle_core::{Device, Tensor};
    use radlens_io::ClassSchema;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    pub(crate) fn tiny() -> GanModelConfig {
        GanModelConfig {
            classes: ClassSchema::jsrt(false),
            image_size: 32,
            latent: 16,
            mapping_layers: 2,
            channel_multiplier: 1.0 / 32.0,
            max_channels: 16,
            patch_channels: 4,
            patch_scales: 2,
            ..GanModelConfig::default()
        }
    }

    #[test]
    fn shapes_of_generator_and_discriminators() {
        let cfg = tiny();
        let dev = Device::Cpu;
        let g = Generator::new(&cfg, &dev, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let z = g.sample_z(3, &mut rng).unwrap();
        let ws = g.ws_from_z(&z, 0.9, &mut rng).unwrap();
        assert_eq!(ws.len(), cfg.num_ws());
        let out = g.synthesis(&ws, &mut rng).unwrap();
        assert_eq!(out.image.dims(), [3, 1, 32, 32]);
        assert_eq!(out.seg_logits.dims(), [3, 4, 32, 32]);
        let d = ImageDiscriminator::new(&cfg, &dev, 2).unwrap();
        assert_eq!(d.forward(&out.image).unwrap().dims(), [3]);
        let pd = PatchDiscriminator::new(&cfg, &dev, 3).unwrap();
        let pair = Tensor::cat(&[&out.image, &out.seg_logits], 1).unwrap();
        let outs = pd.forward(&pair).unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[0].logits.dims(), [3, 1, 4, 4]);
        assert_eq!(outs[1].logits.dims(), [3, 1, 2, 2]);
        let mean = encoder::mean_w(&g, 1).unwrap();
        let e = encoder::Encoder::new(&cfg, mean, &dev, 4).unwrap();
        assert_eq!(e.forward(&out.image).unwrap().dims(), [3, cfg.num_ws(), 16]);
    }

    /// Noise maps given explicitly (as inversion optimises them) reproduce the noise
    /// `synthesis` draws from the same seed, and other noise changes the image.
    #[test]
    fn given_noise_equals_drawn_noise() {
        let cfg = tiny();
        let g = Generator::new(&cfg, &Device::Cpu, 1).unwrap();
        for (name, var) in g.params.named() {
            if name.ends_with("noise_strength") {
                var.set(&Tensor::new(&[0.5f32], &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let mut rng = StdRng::seed_from_u64(4);
        let z = g.sample_z(2, &mut rng).unwrap();
        let ws = g.ws_from_z(&z, 0.0, &mut rng).unwrap();
        let drawn = g.synthesis(&ws, &mut StdRng::seed_from_u64(9)).unwrap();
        let noise = g.random_noise(2, &mut StdRng::seed_from_u64(9)).unwrap();
        assert_eq!(g.noise_sides(), [4, 8, 8, 16, 16, 32, 32]);
        let given = g.synthesis_with_noise(&ws, &noise).unwrap();
        let other = g
            .synthesis_with_noise(
                &ws,
                &g.random_noise(2, &mut StdRng::seed_from_u64(10)).unwrap(),
            )
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&drawn.image, &given.image), 0.0);
        assert_eq!(diff(&drawn.seg_logits, &given.seg_logits), 0.0);
        assert!(diff(&drawn.image, &other.image) > 1e-3);
        let err = g
            .synthesis_with_noise(&ws, &noise[1..])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("7 noise maps, got 6"), "{err}");
    }

    /// The image-label discriminator's loss, with the image detached as training does,
    /// reaches the label branch and the shared trunk but no ToRGB layer.
    #[test]
    fn label_discriminator_gradient_stays_out_of_the_image_branch() {
        let cfg = tiny();
        let dev = Device::Cpu;
        let g = Generator::new(&cfg, &dev, 1).unwrap();
        let pd = PatchDiscriminator::new(&cfg, &dev, 3).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let z = g.sample_z(2, &mut rng).unwrap();
        let out = g
            .synthesis(&g.ws_from_z(&z, 0.0, &mut rng).unwrap(), &mut rng)
            .unwrap();
        let pair = train::label_pair(&out.image.detach(), &out.seg_logits).unwrap();
        let fake: Vec<Tensor> = pd
            .forward(&pair)
            .unwrap()
            .into_iter()
            .map(|o| o.logits)
            .collect();
        let grads = losses::g_hinge(&fake).unwrap().backward().unwrap();
        for (name, var) in g.params.named() {
            let got = grads.get(var.as_tensor()).is_some();
            if name.starts_with("to_rgb") {
                assert!(
                    !got,
                    "{name} got a gradient from the image-label discriminator"
                );
            }
            if name.starts_with("to_seg") && name.ends_with("conv.weight") {
                assert!(got, "{name} got no gradient");
            }
        }
        let trunk = g
            .params
            .named()
            .into_iter()
            .find(|(n, _)| *n == "conv.4.conv.weight")
            .unwrap()
            .1;
        assert!(grads.get(trunk.as_tensor()).is_some());
    }
}

//! `radlens bench gan`: one SemanticGAN training step (image-discriminator and
//! image-label-discriminator updates, then the generator update) and the same step with
//! the lazy R1 branch, radlens against the PyTorch reference, side by side.
//!
//! radlens has no stock-candle switch for SemanticGAN: its layers call radlens-kernels'
//! convolution and FIR resampling directly, so only radlens and PyTorch are timed.
//! Departures from the reference's step, as in training: one generated batch feeds both
//! discriminators (the reference draws one per discriminator), and R1 is applied to the
//! image discriminator only (the reference also regularises the image-label one).

use super::{print_times, TimingArgs};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use radlens_io::ClassSchema;
use radlens_seg::loss::one_hot;
use radlens_seg::semanticgan::train::{GanBatch, GanNets};
use radlens_seg::semanticgan::{GanModelConfig, GanTrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::json;
use std::time::Instant;

#[derive(Args)]
pub struct GanBenchArgs {
    /// Square image side in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Dimension of z and w.
    #[arg(long, default_value_t = 256)]
    latent: usize,
    /// Layers of the mapping network.
    #[arg(long, default_value_t = 4)]
    mapping: usize,
    /// The channel table of StyleGAN2 at channel multiplier 2 (rosinality's, as the
    /// reference uses) times this.
    #[arg(long, default_value_t = 0.25)]
    width: f64,
    /// No layer wider than this.
    #[arg(long, default_value_t = 128)]
    cap: usize,
    /// DiffAugment probability (0, as the reference, which does not augment).
    #[arg(long, default_value_t = 0.0)]
    augment: f64,
    #[command(flatten)]
    timing: TimingArgs,
}

impl GanBenchArgs {
    /// The model of the reference's configuration: 4 JSRT classes, a 3-scale image-label
    /// discriminator of first width 64 x `width` (pix2pixHD's 64, scaled as the reference).
    fn model(&self) -> Result<GanModelConfig> {
        let cfg = GanModelConfig {
            classes: ClassSchema::jsrt(false),
            image_size: self.size,
            latent: self.latent,
            mapping_layers: self.mapping,
            // radlens' table is StyleGAN2's at channel multiplier 1 (256 channels at 64 x 64,
            // 128 at 128 x 128); the reference's is at multiplier 2, so the same network
            // takes twice the width here.
            channel_multiplier: 2.0 * self.width,
            max_channels: self.cap,
            patch_channels: ((64.0 * self.width) as usize).max(1),
            patch_scales: 3,
            ..GanModelConfig::default()
        };
        cfg.validate()
            .map_err(anyhow::Error::msg)
            .context("the benchmark's model")?;
        Ok(cfg)
    }

    /// The training configuration with this batch and augmentation.
    fn train(&self) -> Result<GanTrainConfig> {
        if !(0.0..=1.0).contains(&self.augment) {
            anyhow::bail!("--augment {} is not a probability", self.augment);
        }
        if self.batch == 0 {
            anyhow::bail!("--batch must be positive");
        }
        let mut t = GanTrainConfig {
            batch_size: self.batch,
            seed: self.timing.seed,
            ..GanTrainConfig::default()
        };
        t.augment.probability = self.augment;
        Ok(t)
    }
}

/// A seeded batch as the reference's: N(0,1) real images, and N(0,1) labelled images with
/// the one-hot of uniform random labels.
fn random_batch(seed: u64, m: &GanModelConfig, batch: usize) -> Result<GanBatch> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (s, c) = (m.image_size, m.classes.len());
    let mut normal = |n: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        Ok(Tensor::from_vec(v, (batch, 1, s, s), &Device::Cpu)?)
    };
    let real = normal(batch * s * s)?;
    let image = normal(batch * s * s)?;
    let labels: Vec<u8> = (0..batch * s * s)
        .map(|_| rng.gen_range(0..c) as u8)
        .collect();
    let onehot = one_hot(&labels, batch, c, s, &Device::Cpu)?;
    Ok(GanBatch {
        real,
        labelled_pair: Tensor::cat(&[&image, &onehot], 1)?,
    })
}

/// The training-step index of the `i`-th timed step: a multiple of `r1_every` when
/// `with_r1` (training then runs R1), never one otherwise.
fn step_index(i: usize, r1_every: usize, with_r1: bool) -> usize {
    if with_r1 {
        (i + 1) * r1_every
    } else if r1_every == 1 {
        unreachable!("r1_every 1 has no step without R1")
    } else {
        i * r1_every + 1
    }
}

/// The networks, their fixed batch and the training configuration, stepped as training.
struct Bench {
    nets: GanNets,
    batch: GanBatch,
    train: GanTrainConfig,
    r1: f64,
}

impl Bench {
    fn new(m: &GanModelConfig, train: GanTrainConfig) -> Result<Self> {
        let nets = GanNets::new(m, train.seed, &Device::Cpu)?;
        let batch = random_batch(train.seed, m, train.batch_size)?;
        Ok(Self {
            nets,
            batch,
            train,
            r1: 0.0,
        })
    }

    /// Training step `step`, its randomness drawn from (seed, step) as in training.
    fn step(&mut self, step: usize) -> Result<()> {
        let seed = self.train.seed.wrapping_mul(1_000_003) ^ step as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        let losses = self
            .nets
            .step(&self.batch, &self.train, step, &mut rng, self.r1)
            .with_context(|| format!("benchmark step {step}"))?;
        self.r1 = losses.r1;
        Ok(())
    }
}

/// Median, fastest and slowest of `v` seconds.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (radlens_core::timing::median(v.to_vec()), lo, hi)
}

pub fn run(a: &GanBenchArgs) -> Result<()> {
    a.timing.prepare()?;
    let m = a.model()?;
    let train = a.train()?;
    let t = &a.timing;
    eprintln!(
        "SemanticGAN G+D training step, {0}x{0} batch {1}, latent {2}, mapping {3}, width {4}, cap {5}, \
         {6} threads, median of {7} steps (each also with R1) after {8} warm-up",
        a.size, a.batch, a.latent, a.mapping, a.width, a.cap, t.threads, t.steps, t.warmup
    );
    let mut bench = Bench::new(&m, train)?;
    let every = bench.train.r1_every;
    let (mut plain, mut with_r1) = (Vec::new(), Vec::new());
    // plain and R1 steps alternate, as in the reference
    for i in 0..t.warmup + t.steps {
        let started = Instant::now();
        bench.step(step_index(i, every, false))?;
        let p = started.elapsed().as_secs_f64();
        let started = Instant::now();
        bench.step(step_index(i, every, true))?;
        let r = started.elapsed().as_secs_f64();
        if i >= t.warmup {
            plain.push(p);
            with_r1.push(r);
        }
    }
    let (med, lo, hi) = spread(&plain);
    let (r1_med, r1_lo, r1_hi) = spread(&with_r1);
    let every_f = every as f64;
    let amortised = ((every_f - 1.0) * med + r1_med) / every_f;
    let mut torch_args = vec!["gan".to_string()];
    for (flag, v) in [
        ("--size", a.size.to_string()),
        ("--batch", a.batch.to_string()),
        ("--latent", a.latent.to_string()),
        ("--mapping", a.mapping.to_string()),
        ("--width", a.width.to_string()),
        ("--cap", a.cap.to_string()),
        ("--classes", m.classes.len().to_string()),
        ("--mixing", bench.train.style_mixing.to_string()),
    ] {
        torch_args.extend([flag.to_string(), v]);
    }
    let torch = t.torch_reference(&torch_args)?;
    let torch_s = torch.as_ref().map(|t| t.median_s_per_step);
    let torch_f = |k: &str| {
        torch
            .as_ref()
            .and_then(|t| t.line.get(k))
            .and_then(|v| v.as_f64())
    };
    let (torch_r1, torch_amortised) = (torch_f("r1_s_per_step"), torch_f("amortised_s_per_step"));
    println!("radlens step    median {med:.4} s (min {lo:.4}, max {hi:.4})");
    println!("radlens R1 step median {r1_med:.4} s (min {r1_lo:.4}, max {r1_hi:.4})");
    if let Some(min) = torch_f("min_s_per_step") {
        println!(
            "pytorch step    median {:.4} s (min {min:.4})",
            torch_s.unwrap_or(f64::NAN)
        );
    }
    print_times(
        "step",
        med,
        &[("radlens", Some(med)), ("pytorch", torch_s)],
        None,
    );
    print_times(
        "with R1",
        r1_med,
        &[("radlens", Some(r1_med)), ("pytorch", torch_r1)],
        None,
    );
    print_times(
        "amortised 1/16",
        amortised,
        &[("radlens", Some(amortised)), ("pytorch", torch_amortised)],
        None,
    );
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|x| ours / x);
    println!(
        "radlens: {} PyTorch's step time, {} with R1, {} amortised",
        ratio(med, torch_s).map_or("n/a".into(), |r| format!("{r:.2}x")),
        ratio(r1_med, torch_r1).map_or("n/a".into(), |r| format!("{r:.2}x")),
        ratio(amortised, torch_amortised).map_or("n/a".into(), |r| format!("{r:.2}x")),
    );
    let summary = json!({
        "workload": "gan",
        "size": a.size,
        "batch": a.batch,
        "latent": a.latent,
        "mapping": a.mapping,
        "width": a.width,
        "cap": a.cap,
        "augment": a.augment,
        "threads": t.threads,
        "steps": t.steps,
        "warmup": t.warmup,
        "radlens_s_per_step": med,
        "radlens_min_s_per_step": lo,
        "radlens_max_s_per_step": hi,
        "radlens_r1_s_per_step": r1_med,
        "radlens_amortised_s_per_step": amortised,
        "torch_s_per_step": torch_s,
        "torch_r1_s_per_step": torch_r1,
        "torch_amortised_s_per_step": torch_amortised,
        "ratio_vs_torch": ratio(med, torch_s),
        "amortised_ratio_vs_torch": ratio(amortised, torch_amortised),
        "torch": torch.map(|t| t.line),
    });
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: GanBenchArgs,
    }

    fn args(extra: &[&str]) -> GanBenchArgs {
        let mut v = vec!["bench"];
        v.extend(extra);
        Cli::try_parse_from(v).unwrap().a
    }

    #[test]
    fn defaults_are_the_reference_configuration() {
        let a = args(&[]);
        let m = a.model().unwrap();
        assert_eq!(
            (m.image_size, m.latent, m.mapping_layers, m.max_channels),
            (128, 256, 4, 128)
        );
        assert_eq!((m.patch_channels, m.classes.len()), (16, 4));
        // The reference's table: min(128, 0.25 x {4..64: 512, 128: 256}).
        assert_eq!(
            (
                m.channels(4),
                m.channels(32),
                m.channels(64),
                m.channels(128)
            ),
            (128, 128, 128, 64)
        );
        let t = a.train().unwrap();
        assert_eq!(
            (t.batch_size, t.augment.probability, t.r1_every),
            (4, 0.0, 16)
        );
    }

    #[test]
    fn bad_arguments_are_refused_by_name() {
        let err = args(&["--size", "100"]).model().unwrap_err();
        assert!(format!("{err:#}").contains("image_size 100"), "{err:#}");
        let err = args(&["--augment", "1.5"]).train().unwrap_err();
        assert!(err.to_string().contains("--augment"), "{err}");
        assert!(args(&["--batch", "0"]).train().is_err());
    }

    #[test]
    fn r1_runs_exactly_on_the_r1_steps() {
        for i in 0..5 {
            assert_eq!(step_index(i, 16, true) % 16, 0);
            assert_ne!(step_index(i, 16, false) % 16, 0);
            assert_ne!(step_index(i, 4, false) % 4, 0);
        }
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    }

    /// A bench step is the training step: it changes every network's weights exactly as
    /// `GanNets::step` does from the same seed, batch and step index, and an R1 step adds
    /// the R1 update (its weights differ from a plain step's).
    #[test]
    fn a_bench_step_is_a_training_step() {
        let m = GanModelConfig {
            image_size: 32,
            latent: 16,
            mapping_layers: 2,
            channel_multiplier: 1.0 / 32.0,
            max_channels: 16,
            patch_channels: 4,
            patch_scales: 2,
            ..GanModelConfig::default()
        };
        let train = GanTrainConfig {
            batch_size: 2,
            seed: 3,
            ..GanTrainConfig::default()
        };
        let weights = |n: &GanNets| {
            let mut v: Vec<(String, Vec<f32>)> = n
                .checkpoint()
                .unwrap()
                .into_iter()
                .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let mut bench = Bench::new(&m, train.clone()).unwrap();
        let before = weights(&bench.nets);
        bench.step(1).unwrap();
        let mut nets = GanNets::new(&m, 3, &Device::Cpu).unwrap();
        let batch = random_batch(3, &m, 2).unwrap();
        let mut rng = StdRng::seed_from_u64(3u64.wrapping_mul(1_000_003) ^ 1);
        nets.step(&batch, &train, 1, &mut rng, 0.0).unwrap();
        let (got, want) = (weights(&bench.nets), weights(&nets));
        let mut changed = 0;
        for (((k, g), (_, w)), (_, b)) in got.iter().zip(&want).zip(&before) {
            for ((x, y), z) in g.iter().zip(w).zip(b) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{k}: {x} vs {y}");
                changed += usize::from(x != z);
            }
        }
        assert!(changed > 1000, "only {changed} weights changed");
        let mut plain = Bench::new(&m, train.clone()).unwrap();
        plain.step(17).unwrap();
        let mut reg = Bench::new(&m, train).unwrap();
        reg.step(16).unwrap();
        assert!(reg.r1 > 0.0 && plain.r1 == 0.0);
    }
}

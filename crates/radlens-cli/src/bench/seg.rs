//! `radlens bench seg`: one U-Net (or U-Net+SSN) training step with radlens' kernels,
//! with stock candle and with the PyTorch reference, side by side; or, with
//! `--loss-curve`, the loss curves of the two candle backends from the same seed.

use super::{print_times, TimingArgs};
use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Args;
use radlens_nn::{Adam, AdamHyper};
use radlens_seg::config::{ConvBackend, HeadConfig, ModelConfig};
use radlens_seg::loss::{one_hot, LossWeights};
use radlens_seg::train::optimise_step;
use radlens_seg::SegModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::{json, Value};

/// Adam learning rate of the benchmark, as in the PyTorch reference.
const LEARNING_RATE: f64 = 1e-3;
/// Cross-entropy only for the plain head and the bare MC loss for the SSN, as the reference.
const WEIGHTS: LossWeights = LossWeights {
    dice: 0.0,
    ssn_mean: 0.0,
};

#[derive(Args)]
pub struct SegBenchArgs {
    /// Use the SSN head (rank 10, 20 Monte Carlo samples) instead of plain cross-entropy.
    #[arg(long)]
    ssn: bool,
    /// Square image side in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// U-Net levels (the PyTorch reference uses 4).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// Instead of timing, train this many steps with both backends from the same seed and
    /// compare the loss curves.
    #[arg(long, value_name = "STEPS")]
    loss_curve: Option<usize>,
    #[command(flatten)]
    timing: TimingArgs,
}

pub fn run(a: &SegBenchArgs) -> Result<()> {
    a.timing.prepare()?;
    Device::Cpu.with_context(|| match a.loss_curve {
        Some(steps) => loss_curve_cmd(a, steps),
        None => time_cmd(a),
    })
}

/// The benchmark model: base width 16, GroupNorm(8), 4 classes, as the PyTorch reference.
fn model_config(size: usize, depth: usize, ssn: bool) -> ModelConfig {
    let base = ModelConfig::default();
    let head = if ssn { base.head } else { HeadConfig::Plain };
    ModelConfig {
        image_size: size,
        depth,
        head,
        ..base
    }
}

/// A seeded batch: N(0,1) images (B,1,S,S) and the one-hot of uniform random labels.
fn random_batch(seed: u64, batch: usize, size: usize, classes: usize) -> Result<(Tensor, Tensor)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<f32> = (0..batch * size * size)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let labels: Vec<u8> = (0..batch * size * size)
        .map(|_| rng.gen_range(0..classes) as u8)
        .collect();
    let x = Tensor::from_vec(x, (batch, 1, size, size), &Device::Cpu)?;
    Ok((x, one_hot(&labels, batch, classes, size, &Device::Cpu)?))
}

/// A model with its Adam optimiser and the SSN's noise generator.
struct Trainer {
    model: SegModel,
    opt: Adam,
    rng: StdRng,
}

impl Trainer {
    fn new(cfg: &ModelConfig, seed: u64, backend: ConvBackend) -> Result<Self> {
        let model = SegModel::new(cfg, &Device::Cpu, seed, backend)?;
        let opt = Adam::new(&model.params.var_refs(), AdamHyper::default());
        let rng = StdRng::seed_from_u64(seed ^ 0x55aa);
        Ok(Self { model, opt, rng })
    }

    /// Forward, loss (cross-entropy only for the plain head), backward and Adam step.
    fn step(&mut self, x: &Tensor, onehot: &Tensor) -> Result<f64> {
        let m = &self.model;
        let rng = &mut self.rng;
        Ok(optimise_step(
            m,
            &mut self.opt,
            x,
            onehot,
            WEIGHTS,
            rng,
            LEARNING_RATE,
        )?)
    }
}

/// Median seconds per training step of one backend on a fixed batch.
fn time_backend(a: &SegBenchArgs, cfg: &ModelConfig, backend: ConvBackend) -> Result<f64> {
    let t = &a.timing;
    let (x, onehot) = random_batch(t.seed, a.batch, a.size, cfg.classes.len())?;
    let mut trainer = Trainer::new(cfg, t.seed, backend)?;
    t.median_seconds(backend, || trainer.step(&x, &onehot))
}

/// The PyTorch reference's result for the same configuration (see
/// [`TimingArgs::torch_reference`]).
fn time_torch(a: &SegBenchArgs, cfg: &ModelConfig) -> Result<Option<super::TorchResult>> {
    let mut args = vec!["unet".to_string()];
    for (flag, v) in [
        ("--size", a.size),
        ("--batch", a.batch),
        ("--base", cfg.base_width),
        ("--levels", cfg.depth),
        ("--classes", cfg.classes.len()),
    ] {
        args.extend([flag.to_string(), v.to_string()]);
    }
    if let HeadConfig::Ssn { rank, mc_samples } = cfg.head {
        args.extend([
            "--ssn".into(),
            "--rank".into(),
            rank.to_string(),
            "--mc".into(),
            mc_samples.to_string(),
        ]);
    }
    a.timing.torch_reference(&args)
}

fn time_cmd(a: &SegBenchArgs) -> Result<()> {
    let cfg = model_config(a.size, a.depth, a.ssn);
    cfg.validate().map_err(anyhow::Error::msg)?;
    let what = if a.ssn { "U-Net+SSN" } else { "U-Net" };
    let t = &a.timing;
    eprintln!(
        "{what} training step, {0}x{0} batch {1}, {2} threads, median of {3} steps after {4} warm-up",
        a.size, a.batch, t.threads, t.steps, t.warmup
    );
    let radlens = time_backend(a, &cfg, ConvBackend::Radlens)?;
    let candle = time_backend(a, &cfg, ConvBackend::Candle)?;
    let torch = time_torch(a, &cfg)?;
    let torch_s = torch.as_ref().map(|t| t.median_s_per_step);
    print_times(
        "backend",
        radlens,
        &[
            ("radlens", Some(radlens)),
            ("candle (stock)", Some(candle)),
            ("pytorch", torch_s),
        ],
        None,
    );
    println!(
        "radlens: {:.2}x faster than stock candle, {} PyTorch's time",
        candle / radlens,
        torch_s.map_or("n/a".into(), |t| format!("{:.2}x", radlens / t))
    );
    let (rank, mc) = match cfg.head {
        HeadConfig::Ssn { rank, mc_samples } => (json!(rank), json!(mc_samples)),
        HeadConfig::Plain => (Value::Null, Value::Null),
    };
    let summary = json!({
        "workload": if a.ssn { "unet+ssn" } else { "unet" },
        "size": a.size,
        "batch": a.batch,
        "threads": t.threads,
        "steps": t.steps,
        "warmup": t.warmup,
        "base": cfg.base_width,
        "levels": cfg.depth,
        "classes": cfg.classes.len(),
        "ssn": a.ssn,
        "rank": rank,
        "mc": mc,
        "radlens_s_per_step": radlens,
        "candle_stock_s_per_step": candle,
        "torch_s_per_step": torch_s,
        "torch_version": torch.as_ref().map(|t| &t.version),
        "speedup_vs_candle": candle / radlens,
        "ratio_vs_torch": torch_s.map(|t| radlens / t),
    });
    println!("{summary}");
    Ok(())
}

/// Losses of `steps` training steps on the seeded batch sequence.
fn loss_curve(
    cfg: &ModelConfig,
    batch: usize,
    steps: usize,
    seed: u64,
    backend: ConvBackend,
) -> Result<Vec<f64>> {
    let mut trainer = Trainer::new(cfg, seed, backend)?;
    (0..steps as u64)
        .map(|k| {
            let (x, onehot) = random_batch(
                seed.wrapping_mul(1_000_003) ^ k,
                batch,
                cfg.image_size,
                cfg.classes.len(),
            )?;
            trainer.step(&x, &onehot)
        })
        .collect()
}

/// Largest absolute and relative differences between two loss curves.
fn curve_difference(a: &[f64], b: &[f64]) -> (f64, f64) {
    a.iter().zip(b).fold((0.0, 0.0), |(abs, rel), (x, y)| {
        let d = (x - y).abs();
        (f64::max(abs, d), f64::max(rel, d / y.abs().max(1e-12)))
    })
}

fn loss_curve_cmd(a: &SegBenchArgs, steps: usize) -> Result<()> {
    let cfg = model_config(a.size, a.depth, a.ssn);
    cfg.validate().map_err(anyhow::Error::msg)?;
    let seed = a.timing.seed;
    let ours = loss_curve(&cfg, a.batch, steps, seed, ConvBackend::Radlens)?;
    let stock = loss_curve(&cfg, a.batch, steps, seed, ConvBackend::Candle)?;
    println!(
        "{:>5} {:>12} {:>12} {:>10}",
        "step", "radlens", "candle", "rel diff"
    );
    for (i, (x, y)) in ours.iter().zip(&stock).enumerate() {
        println!(
            "{:>5} {x:>12.6} {y:>12.6} {:>10.2e}",
            i + 1,
            (x - y).abs() / y.abs().max(1e-12)
        );
    }
    let (abs, rel) = curve_difference(&ours, &stock);
    let summary = json!({
        "workload": if a.ssn { "unet+ssn" } else { "unet" },
        "size": a.size,
        "batch": a.batch,
        "levels": a.depth,
        "seed": seed,
        "loss_curve_steps": steps,
        "max_abs_diff": abs,
        "max_rel_diff": rel,
    });
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_seg::config::NormKind;

    /// A small model on 32x32 images with 6 base channels, so that the kernels see channel
    /// counts that are not multiples of 8.
    fn tiny(depth: usize, ssn: bool, norm: NormKind) -> ModelConfig {
        ModelConfig {
            base_width: 6,
            norm,
            ..model_config(32, depth, ssn)
        }
    }

    #[test]
    fn radlens_and_candle_train_alike() {
        for (ssn, norm, depth) in [
            (false, NormKind::Group { groups: 3 }, 1),
            (true, NormKind::Instance, 1),
            (false, NormKind::Group { groups: 3 }, 3),
            (true, NormKind::Group { groups: 2 }, 2),
        ] {
            let cfg = tiny(depth, ssn, norm);
            let ours = loss_curve(&cfg, 2, 5, 7, ConvBackend::Radlens).unwrap();
            let stock = loss_curve(&cfg, 2, 5, 7, ConvBackend::Candle).unwrap();
            let (abs, rel) = curve_difference(&ours, &stock);
            assert!(
                rel < 1e-4,
                "ssn {ssn}, depth {depth}: {ours:?} vs {stock:?} (abs {abs}, rel {rel})"
            );
            assert!(ours[4] < ours[0], "ssn {ssn}: loss did not fall: {ours:?}");
        }
    }

    #[test]
    fn batches_are_seeded() {
        let (x1, y1) = random_batch(5, 2, 8, 4).unwrap();
        let (x2, y2) = random_batch(5, 2, 8, 4).unwrap();
        let (x3, _) = random_batch(6, 2, 8, 4).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&x1), v(&x2));
        assert_eq!(v(&y1), v(&y2));
        assert_ne!(v(&x1), v(&x3));
        assert_eq!(v(&y1).iter().sum::<f32>(), 2.0 * 64.0);
    }

    #[test]
    fn curve_difference_is_the_largest_gap() {
        let (abs, rel) = curve_difference(&[1.0, 2.2], &[1.0, 2.0]);
        assert!((abs - 0.2).abs() < 1e-12 && (rel - 0.1).abs() < 1e-12);
    }
}

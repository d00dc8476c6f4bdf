//! `radlens bench sae`: one Matryoshka BatchTopK training step (encoder, global top-k,
//! nested-prefix losses, AuxK, backward, Adam) with radlens' sparse kernels, with dense
//! candle matmuls, and with the PyTorch reference, side by side.

use super::{print_times, TimingArgs};
use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Args;
use radlens_sae::{ComputePath, SaeConfig, TrainConfig, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::json;

#[derive(Args)]
pub struct SaeBenchArgs {
    /// Activation width.
    #[arg(long, default_value_t = 576)]
    d: usize,
    /// Dictionary size.
    #[arg(long, default_value_t = 4608)]
    dict: usize,
    #[arg(long, default_value_t = 32)]
    k: usize,
    /// Tokens per step.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[command(flatten)]
    timing: TimingArgs,
}

pub fn run(a: &SaeBenchArgs) -> Result<()> {
    let t = &a.timing;
    t.prepare()?;
    let cfg = SaeConfig::matryoshka(a.d, a.dict, a.k)?;
    eprintln!(
        "Matryoshka BatchTopK SAE training step, d {} dict {} k {} batch {}, {} threads, median of {} steps after {} warm-up",
        a.d, a.dict, a.k, a.batch, t.threads, t.steps, t.warmup
    );
    let x = random_batch(t.seed, a.batch, a.d)?;
    let radlens = time_path(a, &cfg, &x, ComputePath::Sparse)?;
    let dense = time_path(a, &cfg, &x, ComputePath::Dense)?;
    let torch_args: Vec<String> = [
        ("sae", None),
        ("--d", Some(a.d)),
        ("--dict", Some(a.dict)),
        ("--k", Some(a.k)),
        ("--batch", Some(a.batch)),
    ]
    .into_iter()
    .flat_map(|(flag, v)| std::iter::once(flag.to_string()).chain(v.map(|v| v.to_string())))
    .collect();
    let torch = t.torch_reference(&torch_args)?;
    let torch_s = torch.as_ref().map(|t| t.median_s_per_step);
    print_times(
        "implementation",
        radlens,
        &[
            ("radlens sparse", Some(radlens)),
            ("candle dense", Some(dense)),
            ("pytorch", torch_s),
        ],
        Some(a.batch),
    );
    let summary = json!({
        "workload": "sae",
        "d": a.d,
        "dict": a.dict,
        "k": a.k,
        "batch": a.batch,
        "threads": t.threads,
        "steps": t.steps,
        "radlens_s_per_step": radlens,
        "candle_dense_s_per_step": dense,
        "torch_s_per_step": torch_s,
        "radlens_tokens_per_s": a.batch as f64 / radlens,
        "speedup_vs_candle_dense": dense / radlens,
        "speedup_vs_torch": torch_s.map(|t| t / radlens),
        "torch": torch.map(|t| t.line),
    });
    println!("{summary}");
    Ok(())
}

/// A seeded N(0, 1) batch (batch, d).
fn random_batch(seed: u64, batch: usize, d: usize) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<f32> = (0..batch * d).map(|_| rng.sample(StandardNormal)).collect();
    Ok(Tensor::from_vec(x, (batch, d), &Device::Cpu)?)
}

/// Median seconds per training step on a fixed batch.
fn time_path(a: &SaeBenchArgs, cfg: &SaeConfig, x: &Tensor, path: ComputePath) -> Result<f64> {
    let train = TrainConfig {
        path,
        seed: a.timing.seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(cfg.clone(), train, x)?;
    a.timing
        .median_seconds(path, || Ok(trainer.step(x)?.loss as f64))
}

//! `radlens bench sae`: one Matryoshka BatchTopK training step (encoder, global top-k,
//! nested-prefix losses, AuxK, backward, Adam) with radlens' sparse kernels, with dense
//! candle matmuls, and with the PyTorch reference, side by side.

use crate::bench_cmd::{median, run_torch_reference, use_threads};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use radlens_sae::{ComputePath, SaeConfig, TrainConfig, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

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
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// CPU threads for candle, the radlens kernels and PyTorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The PyTorch reference script (run with $RADLENS_TORCH_PYTHON, else python3).
    #[arg(long, default_value = "../shared/bench/torch_reference.py")]
    torch_script: PathBuf,
}

pub fn run(a: &SaeBenchArgs) -> Result<()> {
    use_threads(a.threads)?;
    if a.steps == 0 {
        bail!("--steps must be positive");
    }
    let cfg = SaeConfig::matryoshka(a.d, a.dict, a.k)?;
    eprintln!(
        "Matryoshka BatchTopK SAE training step, d {} dict {} k {} batch {}, {} threads, median of {} steps after {} warm-up",
        a.d, a.dict, a.k, a.batch, a.threads, a.steps, a.warmup
    );
    let x = random_batch(a.seed, a.batch, a.d)?;
    let radlens = time_path(a, &cfg, &x, ComputePath::Sparse)?;
    let dense = time_path(a, &cfg, &x, ComputePath::Dense)?;
    let torch_args: Vec<String> = [
        ("sae", None),
        ("--d", Some(a.d)),
        ("--dict", Some(a.dict)),
        ("--k", Some(a.k)),
        ("--batch", Some(a.batch)),
        ("--threads", Some(a.threads)),
        ("--steps", Some(a.steps)),
        ("--warmup", Some(a.warmup)),
    ]
    .into_iter()
    .flat_map(|(flag, v)| std::iter::once(flag.to_string()).chain(v.map(|v| v.to_string())))
    .collect();
    let torch = run_torch_reference(&a.torch_script, &torch_args)?;
    let torch_s = torch.as_ref().and_then(|t| t["median_s_per_step"].as_f64());
    println!(
        "{:<16} {:>10} {:>12} {:>12}",
        "implementation", "s/step", "tokens/s", "vs radlens"
    );
    let row = |name: &str, s: f64| {
        println!(
            "{name:<16} {s:>10.4} {:>12.0} {:>11.2}x",
            a.batch as f64 / s,
            s / radlens
        )
    };
    row("radlens sparse", radlens);
    row("candle dense", dense);
    match torch_s {
        Some(t) => row("pytorch", t),
        None => println!(
            "{:<16} {:>10}",
            "pytorch", "n/a (no torch; set RADLENS_TORCH_PYTHON)"
        ),
    }
    let summary = json!({
        "workload": "sae",
        "d": a.d,
        "dict": a.dict,
        "k": a.k,
        "batch": a.batch,
        "threads": a.threads,
        "steps": a.steps,
        "radlens_s_per_step": radlens,
        "candle_dense_s_per_step": dense,
        "torch_s_per_step": torch_s,
        "radlens_tokens_per_s": a.batch as f64 / radlens,
        "speedup_vs_candle_dense": dense / radlens,
        "speedup_vs_torch": torch_s.map(|t| t / radlens),
        "torch": torch,
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
        seed: a.seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(cfg.clone(), train, x)?;
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        let s = trainer.step(x)?;
        if !s.loss.is_finite() {
            bail!("{path:?}: loss is {} at step {i}", s.loss);
        }
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

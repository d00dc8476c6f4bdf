//! `radlens bench ...`: the workbench under load (`serve`), and training-step timings of radlens' kernels against stock candle and
//! the PyTorch reference, and a loss-curve equivalence check of the two candle backends.
//! Each benchmark times its steps with `radlens_core::timing::time_runs` and prints a
//! table of seconds per step and a final JSON line.

mod gan;
mod sae;
mod seg;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use radlens_core::timing::time_runs;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time one U-Net (or U-Net+SSN) training step: radlens kernels, stock candle, PyTorch.
    Seg(seg::SegBenchArgs),
    /// Time one Matryoshka BatchTopK SAE training step: sparse kernels, dense candle, PyTorch.
    Sae(sae::SaeBenchArgs),
    /// Time one SemanticGAN G+D training step (and its lazy-R1 variant) against PyTorch.
    Gan(gan::GanBenchArgs),
    /// Load-test the workbench on loopback: concurrent clients, latency percentiles.
    Serve(serve::ServeBenchArgs),
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Seg(a) => seg::run(&a),
        BenchCommand::Sae(a) => sae::run(&a),
        BenchCommand::Gan(a) => gan::run(&a),
        BenchCommand::Serve(a) => serve::run(&a),
    }
}

/// The settings every benchmark shares.
#[derive(Args)]
pub struct TimingArgs {
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

impl TimingArgs {
    /// Checks the settings and sizes candle's and rayon's thread pools; must run before
    /// any tensor work.
    fn prepare(&self) -> Result<()> {
        if self.threads == 0 || self.steps == 0 {
            bail!("--threads and --steps must be positive");
        }
        // candle sizes its thread pools from these on first use; nothing has run yet.
        std::env::set_var("RAYON_NUM_THREADS", self.threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", self.threads.to_string());
        let got = candle_core::utils::get_num_threads();
        if got != self.threads {
            bail!(
                "candle uses {got} threads, not the requested {}",
                self.threads
            );
        }
        Ok(())
    }

    /// Median seconds per call of `step`, which takes a training step and returns its
    /// loss; a non-finite loss stops the benchmark, naming `what` was timed.
    fn median_seconds(
        &self,
        what: impl std::fmt::Debug,
        mut step: impl FnMut() -> Result<f64>,
    ) -> Result<f64> {
        let mut i = 0;
        let timing = time_runs(self.warmup, self.steps, || {
            let loss = step()?;
            if !loss.is_finite() {
                bail!("{what:?}: loss is {loss} at step {i}");
            }
            i += 1;
            Ok(())
        })?;
        Ok(timing.median)
    }

    /// Runs the PyTorch reference with `args` (its workload and sizes; the shared timing
    /// flags are added); `None` without torch, or when the reference fails (with a
    /// warning).
    fn torch_reference(&self, args: &[String]) -> Result<Option<TorchResult>> {
        let Some(python) = torch_python() else {
            return Ok(None);
        };
        let out = Command::new(&python)
            .arg(&self.torch_script)
            .args(args)
            .args(["--threads", &self.threads.to_string()])
            .args(["--steps", &self.steps.to_string()])
            .args(["--warmup", &self.warmup.to_string()])
            .output()
            .with_context(|| format!("running {python}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            eprintln!("warning: the PyTorch reference failed, reporting no PyTorch time: {err}");
            return Ok(None);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let parse = || -> serde_json::Result<TorchResult> {
            let line: Value = serde_json::from_str(last)?;
            let TorchLine {
                median_s_per_step,
                torch,
            } = serde_json::from_value(line.clone())?;
            Ok(TorchResult {
                median_s_per_step,
                version: torch,
                line,
            })
        };
        Ok(Some(parse().with_context(|| format!("parsing '{last}'"))?))
    }
}

/// The Python interpreter for the PyTorch reference, if it can import torch.
fn torch_python() -> Option<String> {
    let python = std::env::var("RADLENS_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// The fields of the PyTorch reference's result line that radlens reads.
#[derive(Deserialize)]
struct TorchLine {
    median_s_per_step: f64,
    torch: String,
}

/// The PyTorch reference's result.
struct TorchResult {
    median_s_per_step: f64,
    /// torch's version.
    version: String,
    /// The whole result line, for the benchmark's JSON line.
    line: Value,
}

/// Prints each implementation's seconds per step (and tokens per second, given the
/// tokens of a step) and its time relative to radlens', `radlens` seconds per step; a
/// row without a time is PyTorch, missing.
fn print_times(
    heading: &str,
    radlens: f64,
    rows: &[(&str, Option<f64>)],
    tokens_per_step: Option<usize>,
) {
    let tokens =
        |s: f64| tokens_per_step.map_or(String::new(), |n| format!(" {:>12.0}", n as f64 / s));
    let tokens_heading = tokens_per_step.map_or(String::new(), |_| format!(" {:>12}", "tokens/s"));
    println!(
        "{heading:<16} {:>12}{tokens_heading} {:>12}",
        "s/step", "vs radlens"
    );
    for &(name, seconds) in rows {
        match seconds {
            Some(s) => println!("{name:<16} {s:>12.4}{} {:>11.2}x", tokens(s), s / radlens),
            None => println!(
                "{name:<16} {:>12}",
                "n/a (no torch; set RADLENS_TORCH_PYTHON)"
            ),
        }
    }
}

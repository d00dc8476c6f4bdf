//! The `radlens` command-line tool.

mod alloc;
mod bench;
mod dicom_cmd;
mod import_cmd;
mod lm_cmd;
mod lm_serve_cmd;
mod progress;
mod report_cmd;
mod sae_autointerp_cmd;
mod sae_cmd;
mod sae_steer_cmd;
mod seg_cmd;
mod seg_compare;
mod seg_gan;
mod seg_progress;
mod seg_robustness;
mod seg_shift;
mod seg_subgroups;
mod serve_cmd;
mod threads;
mod user_cmd;

/// The model radlens ships, relative to the repository root.
pub const SHIPPED_MODEL: &str = "models/jsrt-ssn";
/// The anatomy model the report engine and the workbench measure with: the shipped
/// model's architecture and training with part of its training films held out, so that
/// its interval margins are calibrated on films nothing else was chosen on.
pub const MEASUREMENT_MODEL: &str = "models/jsrt-ssn-measure";

use clap::{Parser, Subcommand};

/// radlens: trustworthy chest X-ray AI — segmentation with uncertainty,
/// honest evaluation, interpretability and a clinician workbench.
#[derive(Parser)]
#[command(name = "radlens", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment chest X-rays: train, predict (with samples and uncertainty), evaluate.
    #[command(subcommand)]
    Seg(seg_cmd::SegCommand),
    /// Benchmark training steps (U-Net/SSN, SAE, SemanticGAN) against stock candle and PyTorch.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the hookable GGUF language model (interpretability core).
    #[command(subcommand)]
    Lm(lm_cmd::LmCommand),
    /// Sparse autoencoders on the LM's residual stream: harvest, train, eval, features.
    #[command(subcommand)]
    Sae(sae_cmd::SaeCommand),
    /// Inspect DICOM files and export frames as PNG.
    #[command(subcommand)]
    Dicom(dicom_cmd::DicomCommand),
    /// Report engine: label reports with CheXpert observations and evaluate the labeller.
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
    /// The clinician workbench: web pages and JSON API on an embedded database.
    Serve(serve_cmd::ServeArgs),
    /// Import a dataset's films (covid-cxr:<dir>, jsrt:<dir>) into the workbench database.
    Import(import_cmd::ImportArgs),
    /// Workbench accounts: add (password from stdin) and list.
    #[command(subcommand)]
    User(user_cmd::UserCommand),
}

fn main() {
    alloc::reuse_large_blocks();
    threads::pin_thread_count();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Seg(cmd) => seg_cmd::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Lm(cmd) => lm_cmd::run(cmd),
        Command::Sae(cmd) => sae_cmd::run(cmd),
        Command::Dicom(cmd) => dicom_cmd::run(cmd),
        Command::Report(cmd) => report_cmd::run(cmd),
        Command::Serve(args) => serve_cmd::run(args),
        Command::User(cmd) => user_cmd::run(cmd),
        Command::Import(args) => import_cmd::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {}", describe(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each cause only where the message so far does not already
/// quote it (library errors often include their cause in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;
    use anyhow::Context;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoted = radlens_core::FileError::new(std::path::Path::new("a.json"), io);
        let e = anyhow::Error::new(quoted);
        assert_eq!(describe(&e), "a.json: no such file");
        let e = Err::<(), _>(std::io::Error::other("disk full"))
            .context("writing b.csv")
            .unwrap_err();
        assert_eq!(describe(&e), "writing b.csv: disk full");
    }
}

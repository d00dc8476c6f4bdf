//! Train (or resume) a SemanticGAN with the library alone, reporting progress through a
//! closure observer: the same loop as `radlens seg train --config configs/jsrt-semanticgan.toml`.
//!
//! ```sh
//! cargo run --release -p radlens-seg --example train_semanticgan -- \
//!     jsrt:../shared/data/jsrt runs/semanticgan-173 configs/jsrt-semanticgan.toml [--resume]
//! ```
//!
//! It prints one line per 10 steps (step, seconds per step, the losses) and the sample grids.

use candle_core::Device;
use radlens_seg::semanticgan::{train_gan, GanRunConfig, GanTrainEvent, GanTrainRequest};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dataset, out, config, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: train_semanticgan <kind:dir> <run folder> <config.toml> [--resume]".into(),
        );
    };
    let request = GanTrainRequest {
        dataset: dataset.parse()?,
        out: PathBuf::from(out),
        config: GanRunConfig::from_toml(config.as_ref())?,
        resume: rest.iter().any(|a| a == "--resume"),
        steps: None,
        encoder_steps: None,
        split_file: None,
        init: None,
        device: Device::Cpu,
    };
    let show = |e: &GanTrainEvent| match e {
        GanTrainEvent::Started {
            step,
            steps,
            labelled,
            unlabelled,
        } => {
            println!(
                "{labelled} labelled, {unlabelled} unlabelled images; from step {step} of {steps}"
            )
        }
        GanTrainEvent::Step {
            step,
            losses,
            seconds,
            ..
        } if step % 10 == 0 => {
            println!("step {step} {seconds:.2}s {losses:?}")
        }
        GanTrainEvent::Samples { path, .. } => println!("samples: {}", path.display()),
        _ => {}
    };
    let run = train_gan(request, &show)?;
    println!("done: {}", run.display());
    Ok(())
}

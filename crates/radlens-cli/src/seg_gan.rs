//! `radlens seg train` with a SemanticGAN config (`kind = "semanticgan"`): runs the GAN's
//! training loop and shows its progress: a bar over the steps with the latest losses, a
//! log line when a sample grid is written and every 50 steps (for `nohup` logs); then the
//! same for the encoder's steps.

use crate::progress::bar;
use indicatif::ProgressBar;
use radlens_core::Observer;
use radlens_seg::semanticgan::{GanTrainEvent, GanTrainRequest};
use std::sync::OnceLock;

/// Steps between plain log lines.
const LOG_EVERY: usize = 50;

#[derive(Default)]
pub struct GanProgress {
    loading: OnceLock<ProgressBar>,
    steps: OnceLock<ProgressBar>,
    encoder: OnceLock<ProgressBar>,
}

impl Observer<GanTrainEvent> for GanProgress {
    fn observe(&self, event: &GanTrainEvent) {
        match event {
            GanTrainEvent::CaseLoaded(c) => {
                let pb = self
                    .loading
                    .get_or_init(|| bar(c.total, "loading images {bar:30} {pos}/{len} {elapsed}"));
                pb.set_position(c.done);
                if c.done == c.total {
                    pb.finish_and_clear();
                }
            }
            GanTrainEvent::Started {
                step,
                steps,
                labelled,
                unlabelled,
            } => {
                eprintln!("SemanticGAN: {labelled} labelled and {unlabelled} unlabelled images; step {step} of {steps}");
                start(&self.steps, "step", *step, *steps);
            }
            GanTrainEvent::Step {
                step,
                steps,
                losses: l,
                seconds,
            } => {
                let msg = format!(
                    "D {:.3} Dlab {:.3} G {:.3} Glab {:.3} FM {:.3} R1 {:.3} {seconds:.1}s/step",
                    l.d_image, l.d_label, l.g_image, l.g_label, l.feature_matching, l.r1
                );
                advance(&self.steps, "step", *step, *steps, msg);
            }
            GanTrainEvent::Samples { step, path } => {
                eprintln!("step {step}: samples in {}", path.display())
            }
            GanTrainEvent::EncoderStarted { step, steps } => {
                if let Some(pb) = self.steps.get() {
                    pb.finish_and_clear();
                }
                eprintln!("encoder to W+: step {step} of {steps}");
                start(&self.encoder, "encoder", *step, *steps);
            }
            GanTrainEvent::EncoderStep {
                step,
                steps,
                losses: l,
                seconds,
            } => {
                let msg = format!(
                    "MSE {:.4}/{:.4} perceptual {:.3}/{:.3} CE {:.3} Dice {:.3} {seconds:.1}s/step",
                    l.unlabelled_mse,
                    l.labelled_mse,
                    l.unlabelled_perceptual,
                    l.labelled_perceptual,
                    l.cross_entropy,
                    l.dice
                );
                advance(&self.encoder, "encoder step", *step, *steps, msg);
            }
        }
    }
}

/// Starts the bar in `cell` (labelled `label`) over `steps` at `step`.
fn start(cell: &OnceLock<ProgressBar>, label: &str, step: usize, steps: usize) {
    let pb = cell.get_or_init(|| {
        bar(
            steps as u64,
            &format!("{label} {{bar:30}} {{pos}}/{{len}} {{msg}} [{{elapsed}}<{{eta}}]"),
        )
    });
    pb.set_position(step as u64);
}

/// Moves the bar in `cell` to `step` with `msg`, and logs a line every [`LOG_EVERY`] steps.
fn advance(cell: &OnceLock<ProgressBar>, label: &str, step: usize, steps: usize, msg: String) {
    if step.is_multiple_of(LOG_EVERY) || step == steps {
        eprintln!("{label} {step}/{steps} {msg}");
    }
    if let Some(pb) = cell.get() {
        pb.set_message(msg);
        pb.set_position(step as u64);
    }
}

/// Trains the SemanticGAN `req` describes.
pub fn train(req: GanTrainRequest) -> anyhow::Result<()> {
    let out = req.out.clone();
    radlens_seg::semanticgan::train_gan(req, &GanProgress::default())
        .map_err(|e| anyhow::anyhow!("training into {}: {e}", out.display()))?;
    println!(
        "SemanticGAN trained; generator in {}/model.safetensors, encoder in encoder.safetensors",
        out.display()
    );
    Ok(())
}

//! How `radlens seg` shows progress: training and evaluation events as progress bars on
//! stderr, and one log line per finished epoch.

use crate::progress::bar;
use indicatif::ProgressBar;
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_seg::{EvalEvent, TrainEvent};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Bars for loading cases and for the steps of each epoch; a line per epoch.
#[derive(Default)]
pub struct TrainProgress {
    loading: OnceLock<ProgressBar>,
    epoch: Mutex<Option<ProgressBar>>,
}

impl TrainProgress {
    fn epoch_bar(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        // A bar is only drawn: one left by a panicking thread is still fine to use.
        self.epoch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer<TrainEvent> for TrainProgress {
    fn observe(&self, event: &TrainEvent) {
        match event {
            TrainEvent::CaseLoaded(c) => {
                let pb = self
                    .loading
                    .get_or_init(|| bar(c.total, "loading cases {bar:30} {pos}/{len} {elapsed}"));
                advance(pb, c);
            }
            TrainEvent::EpochStarted {
                epoch,
                epochs,
                steps,
            } => {
                let pb = bar(
                    *steps as u64,
                    "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
                );
                pb.set_prefix(format!("{epoch}/{epochs}"));
                *self.epoch_bar() = Some(pb);
            }
            TrainEvent::Step {
                step,
                steps,
                mean_loss,
            } => {
                if let Some(pb) = &*self.epoch_bar() {
                    pb.set_message(format!("loss {mean_loss:.4}"));
                    advance(
                        pb,
                        &Count {
                            done: *step as u64,
                            total: *steps as u64,
                        },
                    );
                }
            }
            TrainEvent::EpochFinished {
                record,
                epochs,
                improved,
            } => eprintln!(
                "epoch {:>3}/{}  loss {:.4}  val Dice {}  {:.0}s{}",
                record.epoch,
                epochs,
                record.train_loss,
                record
                    .val_dice
                    .iter()
                    .map(|d| format!("{}={:.4}", d.class, d.dice))
                    .collect::<Vec<_>>()
                    .join(" "),
                record.seconds,
                if *improved { "  *best" } else { "" }
            ),
        }
    }
}

/// A bar over the evaluated cases, showing the case in progress (in a log, a line at each
/// tenth of the cases).
#[derive(Default)]
pub struct EvalProgress(OnceLock<ProgressBar>);

impl EvalProgress {
    fn bar(&self, total: u64) -> &ProgressBar {
        self.0.get_or_init(|| {
            bar(
                total,
                "evaluating {bar:30} {pos}/{len} {wide_msg} [{elapsed}<{eta}]",
            )
        })
    }
}

impl Observer<EvalEvent> for EvalProgress {
    fn observe(&self, event: &EvalEvent) {
        match event {
            EvalEvent::CaseStarted { id, progress } => {
                self.bar(progress.total).set_message(id.clone())
            }
            EvalEvent::CaseFinished(c) => {
                let pb = self.bar(c.total);
                if pb.is_hidden() && crosses_a_tenth(c) {
                    eprintln!(
                        "evaluated {}/{} cases in {:.0?}",
                        c.done,
                        c.total,
                        pb.elapsed()
                    );
                }
                advance(pb, c)
            }
        }
    }
}

/// Whether `c.done` is the first count at or past a tenth of `c.total`: where stderr is
/// no terminal (a log) the bar is hidden, and a SemanticGAN's inversion takes about 20 s a
/// film, so a line at each tenth shows the work is alive.
fn crosses_a_tenth(c: &Count) -> bool {
    let tenths = |done: u64| done * 10 / c.total.max(1);
    c.done > 0 && tenths(c.done) > tenths(c.done - 1)
}

/// Moves `pb` to `c.done`, clearing it once the work is done.
fn advance(pb: &ProgressBar, c: &Count) {
    pb.set_position(c.done);
    if c.done == c.total {
        pb.finish_and_clear();
    }
}

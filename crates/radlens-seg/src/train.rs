//! `radlens seg train`: seeded training with AdamW, warm-up + cosine schedule,
//! augmentation, per-epoch validation, atomic checkpoints and `--resume`. Progress is
//! reported as [`TrainEvent`]s; nothing here prints.

use crate::checkpoint::{load_tensors, save_tensors, RunInfo, SegRun, TrainState};
use crate::config::{ModelConfig, TrainConfig};
use crate::data::{label_budget, ClassMap, PreparedSet};
use crate::error::{Result, SegError};
use crate::loss::{training_loss, LossWeights};
use crate::unet::SegModel;
use candle_core::{Device, Tensor};
use radlens_core::observe::Count;
use radlens_core::{History, Observer};
use radlens_eval::overlap::class_mask;
use radlens_io::split::{Split, SplitPart};
use radlens_io::DatasetSpec;
use radlens_nn::schedule::warmup_cosine;
use radlens_nn::{Adam, AdamHyper};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::PathBuf;

/// What `radlens seg train` was asked to do.
pub struct TrainRequest {
    pub dataset: DatasetSpec,
    pub out: PathBuf,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Continue from `<out>/checkpoint` instead of starting afresh.
    pub resume: bool,
    /// Train until this many epochs in total (overrides the config, also on resume).
    pub epochs: Option<usize>,
    /// Use this split file instead of drawing one (copied into the run).
    pub split_file: Option<PathBuf>,
    /// Train on at most this many cases (quick checks).
    pub max_train_cases: Option<usize>,
    /// Start a new run from these weights (a `model.safetensors` of the same
    /// architecture and class count) instead of a random initialisation: fine-tuning.
    pub init: Option<PathBuf>,
    pub device: Device,
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub learning_rate: f64,
    /// Mean validation Dice per annotated foreground class, in class order.
    pub val_dice: Vec<ClassDice>,
    pub seconds: f64,
}

/// The mean validation Dice of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassDice {
    pub class: String,
    pub dice: f64,
}

impl EpochRecord {
    fn mean_dice(&self) -> f64 {
        self.val_dice.iter().map(|d| d.dice).sum::<f64>() / self.val_dice.len().max(1) as f64
    }

    /// Its `history.csv` row.
    fn history_row(&self) -> String {
        let mut row = format!(
            "{},{:.6},{:.3e},{:.1}",
            self.epoch, self.train_loss, self.learning_rate, self.seconds
        );
        for d in &self.val_dice {
            row.push_str(&format!(",{:.5}", d.dice));
        }
        row
    }
}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run: PathBuf,
    pub best_epoch: usize,
    pub best_val_dice: f64,
    pub epochs: Vec<EpochRecord>,
}

/// Progress of [`train`], in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// One more case is read and prepared (training cases first, then validation).
    CaseLoaded(Count),
    /// Epoch `epoch` (1-based) of `epochs` begins; it takes `steps` optimiser steps.
    EpochStarted {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    /// Step `step` (1-based) of the epoch's `steps` is done; `mean_loss` is the
    /// epoch's training loss so far.
    Step {
        step: usize,
        steps: usize,
        mean_loss: f64,
    },
    /// An epoch is validated and checkpointed; `improved` when it became the best.
    EpochFinished {
        record: EpochRecord,
        epochs: usize,
        improved: bool,
    },
}

/// The ids a run trains on: the split's training part, cut to the label budget
/// `labelled` ([`label_budget`]), then to `max_cases` (quick checks).
pub fn training_ids(
    split: &Split,
    cfg: &TrainConfig,
    max_cases: Option<usize>,
) -> std::result::Result<Vec<String>, String> {
    let mut ids = split.ids(SplitPart::Train);
    if let Some(n) = cfg.labelled {
        ids = label_budget(&ids, n, cfg.seed)?;
    }
    if let Some(n) = max_cases {
        ids.truncate(n);
    }
    Ok(ids)
}

/// Train a model; see [`TrainRequest`].
pub fn train(req: TrainRequest, observer: &dyn Observer<TrainEvent>) -> Result<TrainOutcome> {
    let (model_cfg, mut train_cfg, state) = if req.resume {
        let run = SegRun::open(&req.out, true)?;
        let info = run.read_info()?;
        (info.model, info.train, Some(run.read_state()?))
    } else {
        (req.model.clone(), req.train.clone(), None)
    };
    model_cfg.validate().map_err(SegError::Invalid)?;
    if let Some(e) = req.epochs {
        train_cfg.epochs = e;
    }

    let dataset = req.dataset.open()?;
    let run_split = SegRun::at(&req.out).split();
    let split = match (&req.split_file, run_split.is_file()) {
        (Some(path), _) => Split::read(path)?,
        (None, true) => Split::read(&run_split)?,
        (None, false) => Split::stratified(
            &req.dataset.to_string(),
            &dataset.samples,
            train_cfg.seed,
            train_cfg.train_fraction,
            train_cfg.val_fraction,
            train_cfg.calibration_fraction,
        ),
    };
    let train_ids = training_ids(&split, &train_cfg, req.max_train_cases)
        .map_err(|e| SegError::Invalid(format!("{}: {e}", req.dataset)))?;
    let val_ids = split.ids(SplitPart::Val);
    let train_samples = dataset.select(&train_ids)?;
    let val_samples = dataset.select(&val_ids)?;
    if train_samples.is_empty() {
        return Err(SegError::Invalid("the training split is empty".into()));
    }
    let mut model = SegModel::new(
        &model_cfg,
        &req.device,
        train_cfg.seed,
        train_cfg.conv_backend,
    )?;
    if let (Some(init), None) = (&req.init, &state) {
        model
            .params
            .assign_from(&load_tensors(init, &req.device)?, init)?;
    }
    // A new run's folder is made only now, so that a bad input leaves nothing behind.
    let run = SegRun::open(&req.out, req.resume)?;
    let map = ClassMap::new(&dataset.classes, &model_cfg.classes);
    let size = model_cfg.image_size;
    let total = (train_samples.len() + val_samples.len()) as u64;
    let loaded = |before: u64| {
        move |c: &Count| {
            observer.observe(&TrainEvent::CaseLoaded(Count {
                done: before + c.done,
                total,
            }))
        }
    };
    let train_set = PreparedSet::load(&train_samples, &map, size, &loaded(0))?;
    let val_set = PreparedSet::load(&val_samples, &map, size, &loaded(train_set.len() as u64))?;

    let mut opt = Adam::new(
        &model.params.var_refs(),
        AdamHyper {
            weight_decay: train_cfg.weight_decay,
            ..AdamHyper::default()
        },
    );
    let (start_epoch, mut best_val, mut best_epoch) = match &state {
        Some(st) => {
            let saved = load_tensors(&run.last(), &req.device)?;
            let (params, mut moments): (HashMap<_, _>, HashMap<_, _>) = saved
                .into_iter()
                .partition(|(k, _)| !k.starts_with("adam."));
            model.params.assign_from(&params, &run.last())?;
            opt.restore(&model.params.named(), |k| moments.remove(k), st.step as u64)?;
            let mut info = run.read_info()?;
            info.train.epochs = train_cfg.epochs;
            run.write_info(&info)?;
            (st.epochs_done, st.best_val_dice, st.best_epoch)
        }
        None => {
            split.write(&run.split())?;
            let info = RunInfo {
                model: model_cfg.clone(),
                train: train_cfg.clone(),
                dataset: req.dataset.to_string(),
                parameters: model.params.count(),
                radlens_version: env!("CARGO_PKG_VERSION").to_string(),
                init: req.init.as_ref().map(|p| p.display().to_string()),
            };
            run.write_info(&info)?;
            (0, f64::NEG_INFINITY, 0)
        }
    };
    model.backend = train_cfg.conv_backend;

    let steps_per_epoch = train_set.len().div_ceil(train_cfg.batch_size);
    let total_steps = steps_per_epoch * train_cfg.epochs;
    let classes = model_cfg.classes.len();
    let class_names: Vec<&str> = map
        .annotated
        .iter()
        .map(|&c| model_cfg.classes.name(c))
        .collect();
    let header = format!(
        "epoch,train_loss,learning_rate,seconds{}",
        class_names
            .iter()
            .map(|c| format!(",val_dice_{c}"))
            .collect::<String>()
    );
    // A resumed run keeps the rows of the epochs it continues from and rewrites the rest.
    let mut history = match state {
        Some(_) => History::resume(&run.history(), &header, start_epoch as u64 + 1)?,
        None => History::new(&run.history(), &header),
    };
    let mut records = Vec::new();
    for epoch in start_epoch..train_cfg.epochs {
        let started = std::time::Instant::now();
        // Each epoch's randomness derives from (seed, epoch) so a resumed run matches.
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            train_cfg.seed.wrapping_mul(1_000_003) ^ epoch as u64,
        );
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        observer.observe(&TrainEvent::EpochStarted {
            epoch: epoch + 1,
            epochs: train_cfg.epochs,
            steps: steps_per_epoch,
        });
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for (i, idx) in order.chunks(train_cfg.batch_size).enumerate() {
            let step = opt.steps_done() as usize;
            lr = warmup_cosine(
                step,
                total_steps,
                train_cfg.warmup_steps,
                train_cfg.learning_rate,
                train_cfg.final_lr_fraction,
            );
            let (x, onehot, _) = train_set.batch(
                idx,
                classes,
                model_cfg.intensity,
                Some((&train_cfg.augment, &mut rng)),
                &req.device,
            )?;
            let weights = LossWeights {
                dice: train_cfg.dice_weight,
                ssn_mean: train_cfg.ssn_mean_loss_weight,
            };
            let value = optimise_step(&model, &mut opt, &x, &onehot, weights, &mut rng, lr)?;
            if !value.is_finite() {
                return Err(SegError::Diverged {
                    epoch: epoch + 1,
                    step: i + 1,
                    reason: format!(
                        "loss is {value} at learning rate {lr:.2e}; the last good checkpoint is kept in {}",
                        run.last().display()
                    ),
                });
            }
            loss_sum += value;
            observer.observe(&TrainEvent::Step {
                step: i + 1,
                steps: steps_per_epoch,
                mean_loss: loss_sum / (i + 1) as f64,
            });
        }
        let val_dice = validate(&model, &val_set, &map, model_cfg.intensity, &req.device)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            learning_rate: lr,
            val_dice: class_names
                .iter()
                .zip(val_dice)
                .map(|(c, dice)| ClassDice {
                    class: c.to_string(),
                    dice,
                })
                .collect(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let improved = record.mean_dice() > best_val || val_set.is_empty();
        if improved {
            best_val = record.mean_dice();
            best_epoch = record.epoch;
            save_tensors(&run.model(), &model.params.tensors())?;
        }
        let mut ckpt = model.params.tensors();
        ckpt.extend(opt.state(&model.params.named())?);
        save_tensors(&run.last(), &ckpt)?;
        run.write_state(&TrainState {
            epochs_done: epoch + 1,
            step: opt.steps_done() as usize,
            best_val_dice: best_val,
            best_epoch,
        })?;
        history.push(record.history_row());
        history.save()?;
        observer.observe(&TrainEvent::EpochFinished {
            record: record.clone(),
            epochs: train_cfg.epochs,
            improved,
        });
        records.push(record);
    }
    Ok(TrainOutcome {
        run: req.out,
        best_epoch,
        best_val_dice: best_val,
        epochs: records,
    })
}

/// One optimisation step on a batch: forward, the head's training loss, backward and an
/// Adam update at learning rate `lr`. Returns the loss; a non-finite loss leaves the model
/// and optimiser untouched, for the caller to stop on.
pub fn optimise_step(
    model: &SegModel,
    opt: &mut Adam,
    x: &Tensor,
    onehot: &Tensor,
    weights: LossWeights,
    rng: &mut StdRng,
    lr: f64,
) -> Result<f64> {
    let out = model.forward(x)?;
    let loss = training_loss(&out, onehot, model.config.head, weights, model.backend, rng)?;
    let value = loss.to_scalar::<f32>()? as f64;
    if value.is_finite() {
        let grads = model.params.grads_of(&loss.backward()?);
        opt.step(&model.params.var_refs(), &grads, 1.0, lr)?;
    }
    Ok(value)
}

/// Mean Dice per annotated class over the validation cases (mean prediction, model resolution).
fn validate(
    model: &SegModel,
    set: &PreparedSet,
    map: &ClassMap,
    intensity: radlens_io::preprocess::IntensityConfig,
    device: &Device,
) -> Result<Vec<f64>> {
    let mut sums = vec![0.0; map.annotated.len()];
    let classes = model.config.classes.len();
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(8) {
        let (x, _, labels) =
            set.batch::<rand::rngs::StdRng>(chunk, classes, intensity, None, device)?;
        let out = model.forward(&x)?;
        let pred = out
            .mean_logits()
            .argmax(1)?
            .to_dtype(candle_core::DType::U8)?;
        let pred = pred.flatten_all()?.to_vec1::<u8>()?;
        let plane = set.size * set.size;
        for b in 0..chunk.len() {
            let (p, y) = (
                &pred[b * plane..(b + 1) * plane],
                &labels[b * plane..(b + 1) * plane],
            );
            for (k, &c) in map.annotated.iter().enumerate() {
                sums[k] += radlens_eval::dice(&class_mask(p, c), &class_mask(y, c));
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|s| s / set.len().max(1) as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::choose_labelled;

    #[test]
    fn a_label_budget_takes_the_seeded_labelled_subset() {
        let all: Vec<String> = (0..14).map(|i| format!("c{i:02}")).collect();
        let split = Split {
            dataset: "x".into(),
            seed: 0,
            train_fraction: 0.7,
            val_fraction: 0.1,
            calibration_fraction: 0.0,
            train: all.clone(),
            calibration: Vec::new(),
            val: vec!["v".into()],
            test: vec!["t".into()],
        };
        let cfg = TrainConfig::default();
        assert_eq!(training_ids(&split, &cfg, None).unwrap(), all);
        let budget = TrainConfig {
            labelled: Some(5),
            ..cfg.clone()
        };
        assert_eq!(
            training_ids(&split, &budget, None).unwrap(),
            choose_labelled(&all, 5, 0)
        );
        assert_eq!(training_ids(&split, &budget, Some(2)).unwrap().len(), 2);
        for n in [0, all.len() + 1] {
            let bad = TrainConfig {
                labelled: Some(n),
                ..cfg.clone()
            };
            let e = training_ids(&split, &bad, None).unwrap_err();
            assert!(e.contains("labelled images asked for"), "{e}");
        }
    }
}

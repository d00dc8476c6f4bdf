//! `radlens seg train`: seeded training with AdamW, warm-up + cosine schedule,
//! augmentation, per-epoch validation, atomic checkpoints and `--resume`.

use crate::checkpoint::{load_tensors, save_tensors, write_json, RunDir, RunInfo, TrainState};
use crate::config::{ModelConfig, TrainConfig};
use crate::data::{ClassMap, PreparedSet};
use crate::error::{Result, SegError};
use crate::loss::{training_loss, LossWeights};
use crate::unet::SegModel;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use radlens_eval::overlap::class_mask;
use radlens_io::split::{Split, SplitPart};
use radlens_io::DatasetSpec;
use radlens_nn::schedule::warmup_cosine;
use radlens_nn::{Adam, AdamHyper};
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
    pub device: Device,
}

/// One epoch's record.
#[derive(Debug, Clone)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub learning_rate: f64,
    /// Mean validation Dice per annotated foreground class, in class order.
    pub val_dice: Vec<f64>,
    pub seconds: f64,
}

impl EpochRecord {
    fn mean_dice(&self) -> f64 {
        self.val_dice.iter().sum::<f64>() / self.val_dice.len().max(1) as f64
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

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
    pb
}

/// Train a model; see [`TrainRequest`].
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    let run = RunDir(req.out.clone());
    let (model_cfg, mut train_cfg, state) = if req.resume {
        let info = run.read_info()?;
        let state = run.read_state()?;
        (info.model, info.train, Some(state))
    } else {
        if run.config().exists() {
            return Err(SegError::Config {
                path: run.config(),
                reason: "the output folder already holds a run; pass --resume to continue it or choose another --out".into(),
            });
        }
        (req.model.clone(), req.train.clone(), None)
    };
    model_cfg.validate().map_err(SegError::Invalid)?;
    if let Some(e) = req.epochs {
        train_cfg.epochs = e;
    }

    let dataset = req.dataset.open()?;
    let split = match (&req.split_file, run.split().is_file()) {
        (Some(path), _) => Split::read(path)?,
        (None, true) => Split::read(&run.split())?,
        (None, false) => Split::stratified(
            &req.dataset.to_string(),
            &dataset.samples,
            train_cfg.seed,
            train_cfg.train_fraction,
            train_cfg.val_fraction,
        ),
    };
    let mut train_ids = split.ids(SplitPart::Train);
    if let Some(n) = req.max_train_cases {
        train_ids.truncate(n);
    }
    let val_ids = split.ids(SplitPart::Val);
    let train_samples = dataset.select(&train_ids).map_err(SegError::Invalid)?;
    let val_samples = dataset.select(&val_ids).map_err(SegError::Invalid)?;
    if train_samples.is_empty() {
        return Err(SegError::Invalid("the training split is empty".into()));
    }
    let map = ClassMap::new(&dataset.classes, &model_cfg.classes);
    let size = model_cfg.image_size;
    let loading = bar(
        (train_samples.len() + val_samples.len()) as u64,
        "loading cases {bar:30} {pos}/{len} {elapsed}",
    );
    let train_set = PreparedSet::load(&train_samples, &map, size, &loading)?;
    let val_set = PreparedSet::load(&val_samples, &map, size, &loading)?;
    loading.finish_and_clear();

    let mut model = SegModel::new(
        &model_cfg,
        &req.device,
        train_cfg.seed,
        train_cfg.conv_backend,
    )?;
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
            write_json(&run.config(), &info)?;
            (st.epochs_done, st.best_val_dice, st.best_epoch)
        }
        None => {
            std::fs::create_dir_all(&req.out).map_err(|e| SegError::Config {
                path: req.out.clone(),
                reason: e.to_string(),
            })?;
            split.write(&run.split())?;
            let info = RunInfo {
                model: model_cfg.clone(),
                train: train_cfg.clone(),
                dataset: req.dataset.to_string(),
                parameters: model.params.count(),
                radlens_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            write_json(&run.config(), &info)?;
            (0, f64::NEG_INFINITY, 0)
        }
    };
    model.backend = train_cfg.conv_backend;

    let steps_per_epoch = train_set.len().div_ceil(train_cfg.batch_size);
    let total_steps = steps_per_epoch * train_cfg.epochs;
    let classes = model_cfg.classes.len();
    let mut records = Vec::new();
    for epoch in start_epoch..train_cfg.epochs {
        let started = std::time::Instant::now();
        // Each epoch's randomness derives from (seed, epoch) so a resumed run matches.
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            train_cfg.seed.wrapping_mul(1_000_003) ^ epoch as u64,
        );
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        let pb = bar(
            steps_per_epoch as u64,
            "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
        );
        pb.set_prefix(format!("{}/{}", epoch + 1, train_cfg.epochs));
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
            let out = model.forward(&x)?;
            let weights = LossWeights {
                dice: train_cfg.dice_weight,
                ssn_mean: train_cfg.ssn_mean_loss_weight,
            };
            let loss = training_loss(
                &out,
                &onehot,
                model_cfg.head,
                weights,
                model.backend,
                &mut rng,
            )?;
            let value = loss.to_scalar::<f32>()? as f64;
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
            let grads = model.params.grads_of(&loss.backward()?);
            opt.step(&model.params.var_refs(), &grads, 1.0, lr)?;
            loss_sum += value;
            pb.set_message(format!("loss {:.4}", loss_sum / (i + 1) as f64));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let val_dice = validate(&model, &val_set, &map, model_cfg.intensity, &req.device)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            learning_rate: lr,
            val_dice,
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
        write_json(
            &run.state(),
            &TrainState {
                epochs_done: epoch + 1,
                step: opt.steps_done() as usize,
                best_val_dice: best_val,
                best_epoch,
            },
        )?;
        append_history(&run, &record, &map, &model_cfg)?;
        eprintln!(
            "epoch {:>3}/{}  loss {:.4}  val Dice {}  {:.0}s{}",
            record.epoch,
            train_cfg.epochs,
            record.train_loss,
            map.annotated
                .iter()
                .zip(&record.val_dice)
                .map(|(c, d)| format!("{}={d:.4}", model_cfg.classes.name(*c)))
                .collect::<Vec<_>>()
                .join(" "),
            record.seconds,
            if improved { "  *best" } else { "" }
        );
        records.push(record);
    }
    Ok(TrainOutcome {
        run: req.out,
        best_epoch,
        best_val_dice: best_val,
        epochs: records,
    })
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

fn append_history(run: &RunDir, r: &EpochRecord, map: &ClassMap, cfg: &ModelConfig) -> Result<()> {
    let path = run.history();
    let new = !path.exists() || r.epoch == 1;
    let mut text = if new {
        let mut h = "epoch,train_loss,learning_rate,seconds".to_string();
        for c in &map.annotated {
            h.push_str(&format!(",val_dice_{}", cfg.classes.name(*c)));
        }
        h + "\n"
    } else {
        std::fs::read_to_string(&path).map_err(|e| radlens_io::IoError::Fs {
            path: path.clone(),
            source: e,
        })?
    };
    // drop rows from epochs at or after this one (a resumed run rewrites them)
    text = text
        .lines()
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|e| e.parse::<usize>().ok())
                .is_none_or(|e| e < r.epoch)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "{},{:.6},{:.3e},{:.1}",
        r.epoch, r.train_loss, r.learning_rate, r.seconds
    ));
    for d in &r.val_dice {
        text.push_str(&format!(",{d:.5}"));
    }
    text.push('\n');
    Ok(radlens_core::atomic::write_atomic(&path, text.as_bytes())?)
}

//! `radlens seg train` with a SemanticGAN config: semi-supervised adversarial training.
//!
//! Each step takes one image-discriminator and image-label-discriminator update and one
//! generator update, on a batch of real images drawn from every image (labelled and
//! unlabelled: they train the image discriminator) and a batch of labelled pairs (they
//! train the image-label discriminator). Every 16th step adds the lazy R1 penalty (gamma
//! times the interval). The generator's weights are averaged (EMA, half-life `ema_kimg`
//! thousand images) into the generator that is saved and sampled.
//!
//! ```text
//! <run>/config.json          kind, model + training config, datasets, parameter counts
//! <run>/split.json           train/val/test case ids of the labelled dataset
//! <run>/labels.json          which training images are labelled, which are not
//! <run>/model.safetensors    the EMA generator at the last checkpoint
//! <run>/history.csv          one row per step: losses and seconds
//! <run>/samples/step_NNNNNN.png   EMA samples from fixed latents: image | mask
//! <run>/checkpoint/last.safetensors  all four networks and their Adam moments
//! <run>/checkpoint/state.json        steps done
//! ```
//!
//! Each step's randomness derives from (seed, step), so a resumed run continues exactly
//! as an uninterrupted one would.
//!
//! A warm start (`GanTrainRequest::init`) continues a trained run or model folder that
//! holds only what segmentation needs (the EMA generator, the image discriminator, the
//! encoder): the generator and its EMA start from the EMA generator, the label
//! discriminator and every Adam afresh, and the run keeps the source's split and label
//! budget, so that no film it was tested on enters training.

use super::augment::diff_augment;
use super::config::{GanKind, GanModelConfig, GanRunConfig, GanTrainConfig};
use super::discriminator::{ImageDiscriminator, PatchDiscriminator};
use super::encoder_train::{train_encoder, EncoderLosses};
use super::generator::{Generated, Generator};
use super::invert::{DISCRIMINATOR_FILE, GENERATOR_FILE};
use super::losses::{d_hinge, d_logistic, feature_matching, g_hinge, g_nonsaturating, r1_penalty};
use super::samples::write_sample_grid;
use crate::checkpoint::{load_tensors, save_tensors, SegRun};
use crate::data::{label_budget, ClassMap, PreparedSet};
use crate::error::{Result, SegError};
use crate::loss::one_hot;
use candle_core::{Device, Tensor};
use radlens_core::observe::Count;
use radlens_core::results::{read_json, write_json};
use radlens_core::{History, Observer, RunDir};
use radlens_io::preprocess::{adjust_intensity, IntensityConfig};
use radlens_io::split::{Split, SplitPart};
use radlens_io::{DatasetSpec, Sample};
use radlens_nn::{Adam, AdamHyper, ParamStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `radlens seg train` was asked to do with a SemanticGAN config.
pub struct GanTrainRequest {
    /// The labelled dataset (its training split supplies the labelled images).
    pub dataset: DatasetSpec,
    pub out: PathBuf,
    pub config: GanRunConfig,
    /// Continue from `<out>/checkpoint`.
    pub resume: bool,
    /// Train until this many steps in total (overrides the config, also on resume).
    pub steps: Option<usize>,
    /// Train the encoder for this many steps in total (overrides the config, also on
    /// resume: more steps continue a finished encoder).
    pub encoder_steps: Option<usize>,
    /// Use this split file instead of drawing one (as the U-Net's `--split-file`).
    pub split_file: Option<PathBuf>,
    /// Start from the SemanticGAN run or model folder here (a warm start; see the module
    /// notes) instead of from random weights.
    pub init: Option<PathBuf>,
    pub device: Device,
}

/// One step's losses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GanLosses {
    pub d_image: f64,
    pub d_label: f64,
    pub g_image: f64,
    pub g_label: f64,
    pub feature_matching: f64,
    /// The last R1 penalty computed (every `r1_every` steps).
    pub r1: f64,
}

impl GanLosses {
    fn all(&self) -> [f64; 6] {
        [
            self.d_image,
            self.d_label,
            self.g_image,
            self.g_label,
            self.feature_matching,
            self.r1,
        ]
    }
}

/// Progress of [`train_gan`].
#[derive(Debug, Clone, PartialEq)]
pub enum GanTrainEvent {
    CaseLoaded(Count),
    /// Training (re)starts at `step` of `steps`.
    Started {
        step: usize,
        steps: usize,
        labelled: usize,
        unlabelled: usize,
    },
    /// Step `step` (1-based) is done; `seconds` is its wall time.
    Step {
        step: usize,
        steps: usize,
        losses: GanLosses,
        seconds: f64,
    },
    /// A sample grid was written (of the GAN, or of the encoder's masks).
    Samples {
        step: usize,
        path: PathBuf,
    },
    /// The encoder's training (re)starts at `step` of `steps`.
    EncoderStarted {
        step: usize,
        steps: usize,
    },
    /// Encoder step `step` (1-based) is done.
    EncoderStep {
        step: usize,
        steps: usize,
        losses: EncoderLosses,
        seconds: f64,
    },
}

/// `config.json` of a SemanticGAN run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanRunInfo {
    pub kind: GanKind,
    pub model: GanModelConfig,
    pub train: GanTrainConfig,
    /// The labelled dataset as given (`kind:dir`).
    pub dataset: String,
    pub parameters: GanParameters,
    pub radlens_version: String,
    /// The run or model folder the weights started from, when not from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<GanInit>,
}

/// Where a warm-started run's weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanInit {
    /// The folder, as given.
    pub from: String,
    /// The generator steps its weights had been trained for: they count towards the
    /// images seen of the EMA's ramp-up.
    pub generator_steps: usize,
}

/// Scalar parameters per network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GanParameters {
    pub generator: usize,
    pub image_discriminator: usize,
    pub label_discriminator: usize,
}

/// `labels.json`: the label budget's labelled training images and the unlabelled ones
/// (`dataset:id` for images of the unlabelled datasets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelBudget {
    pub labelled: Vec<String>,
    pub unlabelled: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct GanState {
    steps_done: usize,
    /// Adam updates of the generator, image and image-label discriminator (the image
    /// discriminator's include the R1 updates), for the bias corrections.
    optimiser_steps: [u64; 3],
}

/// The discriminator input of an image and class logits: the image and the softmax.
pub fn label_pair(image: &Tensor, seg_logits: &Tensor) -> Result<Tensor> {
    let probs = candle_nn::ops::softmax(seg_logits, 1)?;
    Ok(Tensor::cat(&[image, &probs], 1)?)
}

/// GAN intensities: histogram equalisation and gamma (as configured) of the letterboxed
/// [0, 1] image, then [0, 1] mapped to [-1, 1] as StyleGAN2's data.
pub fn gan_intensity(x: &mut [f32], intensity: IntensityConfig) {
    adjust_intensity(x, intensity);
    x.iter_mut().for_each(|v| *v = 2.0 * *v - 1.0);
}

/// The four networks and their optimisers: what one training step updates.
pub struct GanNets {
    g: Generator,
    pub(super) g_ema: Generator,
    pub(super) d: ImageDiscriminator,
    dseg: PatchDiscriminator,
    opt_g: Adam,
    opt_d: Adam,
    opt_dseg: Adam,
}

/// StyleGAN2's Adam: no first-moment momentum, beta2 0.99.
fn gan_adam(p: &ParamStore) -> Adam {
    Adam::new(
        &p.var_refs(),
        AdamHyper {
            beta1: 0.0,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )
}

impl GanNets {
    /// Freshly initialised networks from `seed`, the EMA generator a copy of the generator.
    pub fn new(cfg: &GanModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let g = Generator::new(cfg, device, seed)?;
        let g_ema = Generator::new(cfg, device, seed)?;
        let d = ImageDiscriminator::new(cfg, device, seed.wrapping_add(1))?;
        let dseg = PatchDiscriminator::new(cfg, device, seed.wrapping_add(2))?;
        Ok(Self {
            opt_g: gan_adam(&g.params),
            opt_d: gan_adam(&d.params),
            opt_dseg: gan_adam(&dseg.params),
            g,
            g_ema,
            d,
            dseg,
        })
    }

    fn stores(&self) -> [(&'static str, &ParamStore, Option<&Adam>); 4] {
        [
            ("g.", &self.g.params, Some(&self.opt_g)),
            ("g_ema.", &self.g_ema.params, None),
            ("d.", &self.d.params, Some(&self.opt_d)),
            ("dseg.", &self.dseg.params, Some(&self.opt_dseg)),
        ]
    }

    /// Every network's weights and Adam moments, by checkpoint name.
    pub fn checkpoint(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (prefix, store, opt) in self.stores() {
            for (k, v) in store.tensors() {
                out.insert(format!("{prefix}{k}"), v);
            }
            if let Some(opt) = opt {
                for (k, v) in opt.state(&store.named())? {
                    out.insert(format!("{prefix}{k}"), v);
                }
            }
        }
        Ok(out)
    }

    fn optimiser_steps(&self) -> [u64; 3] {
        [&self.opt_g, &self.opt_d, &self.opt_dseg].map(|o| o.steps_done())
    }

    fn restore(
        &mut self,
        saved: HashMap<String, Tensor>,
        path: &Path,
        steps: [u64; 3],
    ) -> Result<()> {
        let mut saved = saved;
        let mut take = |prefix: &str| take_prefixed(&mut saved, prefix);
        // "g_ema." first: "g." is its prefix
        let ema = take("g_ema.");
        self.g_ema.params.assign_from(&ema, path)?;
        for ((prefix, store, opt), steps) in [
            ("g.", &self.g.params, &mut self.opt_g),
            ("d.", &self.d.params, &mut self.opt_d),
            ("dseg.", &self.dseg.params, &mut self.opt_dseg),
        ]
        .into_iter()
        .zip(steps)
        {
            let (params, mut moments): (HashMap<_, _>, HashMap<_, _>) = take(prefix)
                .into_iter()
                .partition(|(k, _)| !k.starts_with("adam."));
            store.assign_from(&params, path)?;
            opt.restore(&store.named(), |k| moments.remove(k), steps)?;
        }
        Ok(())
    }

    /// The generator (and its EMA) from the EMA generator in `dir`, the image
    /// discriminator from its saved weights; the label discriminator is never saved
    /// beside a model and stays fresh.
    fn warm_start(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let g = dir.join(GENERATOR_FILE);
        let weights = load_tensors(&g, device)?;
        self.g.params.assign_from(&weights, &g)?;
        self.g_ema.params.assign_from(&weights, &g)?;
        let d = dir.join(DISCRIMINATOR_FILE);
        self.d.params.assign_from(&load_tensors(&d, device)?, &d)?;
        Ok(())
    }

    /// Saves the checkpoint and the EMA generator after `done` steps.
    fn save(&self, run: &RunDir, done: usize) -> Result<()> {
        save_tensors(&run.join(CHECKPOINT_FILE), &self.checkpoint()?)?;
        save_tensors(&run.join(GENERATOR_FILE), &self.g_ema.params.tensors())?;
        write_json(
            &run.join(STATE_FILE),
            &GanState {
                steps_done: done,
                optimiser_steps: self.optimiser_steps(),
            },
        )?;
        Ok(())
    }

    /// g_ema <- beta g_ema + (1 - beta) g.
    fn update_ema(&self, beta: f64) -> Result<()> {
        for ((_, e), (_, g)) in self.g_ema.params.vars().iter().zip(self.g.params.vars()) {
            e.set(&((e.as_tensor() * beta)? + (g.as_tensor() * (1.0 - beta))?)?)?;
        }
        Ok(())
    }
}

/// The checkpoint of all four networks and their Adam moments, and its steps, in a run.
const CHECKPOINT_FILE: &str = "checkpoint/last.safetensors";
const STATE_FILE: &str = "checkpoint/state.json";

/// Removes the checkpoint tensors named `prefix...` from `saved` and returns them named
/// without the prefix.
pub(super) fn take_prefixed(
    saved: &mut HashMap<String, Tensor>,
    prefix: &str,
) -> HashMap<String, Tensor> {
    let keys: Vec<String> = saved
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|k| saved.remove(&k).map(|v| (k[prefix.len()..].to_string(), v)))
        .collect()
}

/// Cases for training: labelled pairs and every image (labelled first).
pub(super) struct GanData {
    pub(super) labelled: PreparedSet,
    unlabelled: PreparedSet,
}

impl GanData {
    pub(super) fn images(&self) -> usize {
        self.labelled.len() + self.unlabelled.len()
    }

    /// A batch (B, 1, S, S) of images `idx` over labelled then unlabelled, and the labels
    /// of the labelled ones.
    pub(super) fn batch(
        &self,
        idx: &[usize],
        cfg: IntensityConfig,
        device: &Device,
    ) -> Result<(Tensor, Vec<u8>)> {
        let s = self.labelled.size;
        let mut xs = Vec::with_capacity(idx.len() * s * s);
        let mut ys = Vec::with_capacity(idx.len() * s * s);
        for &i in idx {
            let (img, lab) = match i.checked_sub(self.labelled.len()) {
                None => (&self.labelled.images[i], Some(&self.labelled.labels[i])),
                Some(j) => (&self.unlabelled.images[j], None),
            };
            let mut x = img.clone();
            gan_intensity(&mut x, cfg);
            xs.extend(x);
            if let Some(l) = lab {
                ys.extend_from_slice(l);
            }
        }
        Ok((Tensor::from_vec(xs, (idx.len(), 1, s, s), device)?, ys))
    }
}

fn load_data(
    req: &GanTrainRequest,
    cfg: &GanRunConfig,
    budget: &LabelBudget,
    observer: &dyn Observer<GanTrainEvent>,
) -> Result<GanData> {
    let size = cfg.model.image_size;
    let main = req.dataset.open()?;
    let map = ClassMap::new(&main.classes, &cfg.model.classes);
    let labelled: Vec<&Sample> = main.select(&budget.labelled)?;
    let mut unlabelled: Vec<&Sample> = Vec::new();
    let own: Vec<String> = budget
        .unlabelled
        .iter()
        .filter(|id| !id.contains(':'))
        .cloned()
        .collect();
    unlabelled.extend(main.select(&own)?);
    let others: Vec<radlens_io::Dataset> = cfg
        .train
        .unlabelled_datasets
        .iter()
        .map(|spec| {
            let spec: DatasetSpec = spec
                .parse()
                .map_err(|e| SegError::Invalid(format!("unlabelled dataset '{spec}': {e}")))?;
            Ok(spec.open()?)
        })
        .collect::<Result<_>>()?;
    for ds in &others {
        unlabelled.extend(ds.samples.iter());
    }
    let total = (labelled.len() + unlabelled.len()) as u64;
    let loaded = |before: u64| {
        move |c: &Count| {
            observer.observe(&GanTrainEvent::CaseLoaded(Count {
                done: before + c.done,
                total,
            }))
        }
    };
    let labelled = PreparedSet::load(&labelled, &map, size, &loaded(0))?;
    // unlabelled images' masks are read by the loader but never used
    let unlabelled = PreparedSet::load(&unlabelled, &map, size, &loaded(labelled.len() as u64))?;
    Ok(GanData {
        labelled,
        unlabelled,
    })
}

/// The run's split and label budget: read from the run when resuming, from the source
/// of a warm start, else drawn.
fn budget_of(
    req: &GanTrainRequest,
    cfg: &GanRunConfig,
    run: &RunDir,
) -> Result<(Split, LabelBudget)> {
    let kept = match (&req.init, req.resume) {
        (_, true) => Some(run.root().to_path_buf()),
        (Some(init), false) => Some(init.clone()),
        (None, false) => None,
    };
    if let Some(dir) = kept {
        if let (Some(init), Some(file)) = (&req.init, &req.split_file) {
            return Err(SegError::Invalid(format!(
                "a split file ({}) and a warm start from {}: the run keeps the split of the \
                 run it starts from",
                file.display(),
                init.display()
            )));
        }
        let budget: LabelBudget = read_json(&dir.join("labels.json"))?;
        if budget.labelled.len() != cfg.train.labelled {
            return Err(SegError::Invalid(format!(
                "{} labels {} training images, the config asks for {}",
                dir.join("labels.json").display(),
                budget.labelled.len(),
                cfg.train.labelled
            )));
        }
        return Ok((Split::read(&dir.join("split.json"))?, budget));
    }
    let dataset = req.dataset.open()?;
    let t = &cfg.train;
    let split = match &req.split_file {
        Some(p) => Split::read(p)?,
        None => Split::stratified(
            &req.dataset.to_string(),
            &dataset.samples,
            t.seed,
            t.train_fraction,
            t.val_fraction,
            0.0,
        ),
    };
    let train_ids = split.ids(SplitPart::Train);
    let labelled = label_budget(&train_ids, t.labelled, t.seed)
        .map_err(|e| SegError::Invalid(format!("{}: {e}", req.dataset)))?;
    let mut unlabelled: Vec<String> = train_ids
        .into_iter()
        .filter(|id| !labelled.contains(id))
        .collect();
    for spec in &t.unlabelled_datasets {
        let parsed: DatasetSpec = spec
            .parse()
            .map_err(|e| SegError::Invalid(format!("unlabelled dataset '{spec}': {e}")))?;
        let ds = parsed.open()?;
        unlabelled.extend(ds.samples.iter().map(|s| format!("{spec}:{}", s.id)));
    }
    Ok((
        split,
        LabelBudget {
            labelled,
            unlabelled,
        },
    ))
}

/// Train a SemanticGAN; see [`GanTrainRequest`] and the module notes.
pub fn train_gan(req: GanTrainRequest, observer: &dyn Observer<GanTrainEvent>) -> Result<PathBuf> {
    let run_at = RunDir::at(&req.out);
    let (mut cfg, resumed_init) = if req.resume {
        let info: GanRunInfo = read_json(&run_at.join("config.json"))?;
        let cfg = GanRunConfig {
            kind: info.kind,
            model: info.model,
            train: info.train,
        };
        (cfg, info.init)
    } else {
        (req.config.clone(), None)
    };
    if let Some(s) = req.steps {
        cfg.train.steps = s;
    }
    if let Some(s) = req.encoder_steps {
        cfg.train.encoder.steps = s;
    }
    let (split, budget) = budget_of(&req, &cfg, &run_at)?;
    let data = load_data(&req, &cfg, &budget, observer)?;
    let mut nets = GanNets::new(&cfg.model, cfg.train.seed, &req.device)?;
    let init = match (&req.init, req.resume) {
        (Some(dir), false) => {
            nets.warm_start(dir, &req.device)?;
            let source: GanRunInfo = read_json(&dir.join("config.json"))?;
            Some(GanInit {
                from: dir.display().to_string(),
                generator_steps: source.init.map_or(0, |i| i.generator_steps) + source.train.steps,
            })
        }
        _ => resumed_init,
    };
    // A new run's folder is made only now, so that a bad input leaves nothing behind.
    let run = RunDir::open(&req.out, "config.json", req.resume)?;
    let last = run.join(CHECKPOINT_FILE);
    let start = if req.resume {
        let st: GanState = read_json(&run.join(STATE_FILE))?;
        nets.restore(load_tensors(&last, &req.device)?, &last, st.optimiser_steps)?;
        st.steps_done
    } else {
        split.write(&run.join("split.json"))?;
        write_json(&run.join("labels.json"), &budget)?;
        nets.update_ema(0.0)?;
        // a warm start is resumable, and a model, before its first step
        if init.is_some() {
            nets.save(&run, 0)?;
        }
        0
    };
    let prior_steps = init.as_ref().map_or(0, |i| i.generator_steps);
    let info = GanRunInfo {
        kind: cfg.kind,
        model: cfg.model.clone(),
        train: cfg.train.clone(),
        dataset: req.dataset.to_string(),
        parameters: GanParameters {
            generator: nets.g.params.count(),
            image_discriminator: nets.d.params.count(),
            label_discriminator: nets.dseg.params.count(),
        },
        radlens_version: env!("CARGO_PKG_VERSION").to_string(),
        init,
    };
    write_json(&run.join("config.json"), &info)?;
    std::fs::create_dir_all(run.join("samples"))
        .map_err(|e| radlens_core::FileError::new(&run.join("samples"), e))?;

    let header = "step,seconds,d_image,d_label,g_image,g_label,feature_matching,r1";
    let history_path = SegRun::at(&req.out).history();
    let mut history = if req.resume {
        History::resume(&history_path, header, start as u64 + 1)?
    } else {
        History::new(&history_path, header)
    };
    let t = cfg.train.clone();
    observer.observe(&GanTrainEvent::Started {
        step: start,
        steps: t.steps,
        labelled: data.labelled.len(),
        unlabelled: data.unlabelled.len(),
    });
    let mut r1 = 0.0;
    for step in start..t.steps {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(t.seed.wrapping_mul(1_000_003) ^ step as u64);
        let losses = train_step(&mut nets, &data, &cfg, step, &mut rng, r1, &req.device).map_err(
            |e| match e {
                SegError::Diverged { step, reason, .. } => SegError::Diverged {
                    epoch: 1,
                    step,
                    reason: format!(
                        "{reason}; the last good checkpoint is kept in {}",
                        last.display()
                    ),
                },
                e => e,
            },
        )?;
        r1 = losses.r1;
        nets.update_ema(ema_beta(&t, prior_steps + step))?;
        let seconds = started.elapsed().as_secs_f64();
        let done = step + 1;
        let row: Vec<String> = losses.all().iter().map(|v| format!("{v:.5}")).collect();
        history.push(format!("{done},{seconds:.2},{}", row.join(",")));
        observer.observe(&GanTrainEvent::Step {
            step: done,
            steps: t.steps,
            losses,
            seconds,
        });
        if done % t.sample_every == 0 || done == t.steps {
            let path = run.join(format!("samples/step_{done:06}.png"));
            write_sample_grid(&path, &fixed_samples(&nets.g_ema, t.seed)?)?;
            observer.observe(&GanTrainEvent::Samples { step: done, path });
        }
        if done % t.checkpoint_every == 0 || done == t.steps {
            nets.save(&run, done)?;
            history.save()?;
        }
    }
    let source = info.init.as_ref().map(|i| Path::new(&i.from));
    train_encoder(&run, &nets, &data, &cfg, source, &req.device, observer)?;
    Ok(req.out)
}

/// The EMA decay of step `step` (0-based): half-life `ema_kimg` thousand images, ramped up
/// with the images seen before the step when `ema_rampup` is set (StyleGAN2-ADA).
pub fn ema_beta(t: &GanTrainConfig, step: usize) -> f64 {
    let seen = (step * t.batch_size) as f64;
    let half_life = match t.ema_rampup {
        Some(r) => (t.ema_kimg * 1000.0).min(seen * r),
        None => t.ema_kimg * 1000.0,
    };
    0.5f64.powf(t.batch_size as f64 / half_life.max(1e-8))
}

/// Seed offset of the fixed latents of the sample grids.
const SAMPLE_SEED: u64 = 0x5a3f1e;

/// Eight samples of `g` from latents and noise fixed by `seed`, without style mixing.
pub fn fixed_samples(g: &Generator, seed: u64) -> Result<Generated> {
    let mut rng = StdRng::seed_from_u64(seed ^ SAMPLE_SEED);
    generate(g, 8, 0.0, &mut rng)
}

/// A batch of `n` samples with style mixing probability `mixing`.
pub fn generate(g: &Generator, n: usize, mixing: f64, rng: &mut StdRng) -> Result<Generated> {
    let z = g.sample_z(n, rng)?;
    let ws = g.ws_from_z(&z, mixing, rng)?;
    g.synthesis(&ws, rng)
}

fn logits(outs: &[super::discriminator::PatchOutput]) -> Vec<Tensor> {
    outs.iter().map(|o| o.logits.clone()).collect()
}

/// The value of a scalar loss; an error when it is not finite (nothing is updated then).
fn finite(what: &str, loss: &Tensor, step: usize) -> Result<f64> {
    let v = loss.to_scalar::<f32>()? as f64;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(SegError::Diverged {
            epoch: 1,
            step: step + 1,
            reason: format!("the {what} loss is {v}"),
        })
    }
}

/// One step's real inputs.
pub struct GanBatch {
    /// (B, 1, S, S) images drawn from every training image, labelled or not.
    pub real: Tensor,
    /// (B, 1 + C, S, S) labelled images with their one-hot masks.
    pub labelled_pair: Tensor,
}

/// Draws one step's batch from `data` with `rng`.
fn draw_batch(
    data: &GanData,
    m: &GanModelConfig,
    b: usize,
    rng: &mut StdRng,
    dev: &Device,
) -> Result<GanBatch> {
    let all: Vec<usize> = (0..b).map(|_| rng.gen_range(0..data.images())).collect();
    let lab: Vec<usize> = (0..b)
        .map(|_| rng.gen_range(0..data.labelled.len()))
        .collect();
    let (real, _) = data.batch(&all, m.intensity, dev)?;
    let (x_lab, y_lab) = data.batch(&lab, m.intensity, dev)?;
    let onehot = one_hot(&y_lab, b, m.classes.len(), m.image_size, dev)?;
    let labelled_pair = Tensor::cat(&[&x_lab, &onehot], 1)?;
    Ok(GanBatch {
        real,
        labelled_pair,
    })
}

/// One training step: a batch drawn from `data`, then [`GanNets::step`].
fn train_step(
    nets: &mut GanNets,
    data: &GanData,
    cfg: &GanRunConfig,
    step: usize,
    rng: &mut StdRng,
    last_r1: f64,
    dev: &Device,
) -> Result<GanLosses> {
    let batch = draw_batch(data, &cfg.model, cfg.train.batch_size, rng, dev)?;
    nets.step(&batch, &cfg.train, step, rng, last_r1)
}

impl GanNets {
    /// One update of both discriminators (plus R1 when `step` is a multiple of
    /// `r1_every`) and one of the generator, on `batch`; `last_r1` is reported again on
    /// steps without R1. `rng` draws the latents, noise and augmentations.
    pub fn step(
        &mut self,
        batch: &GanBatch,
        t: &GanTrainConfig,
        step: usize,
        rng: &mut StdRng,
        last_r1: f64,
    ) -> Result<GanLosses> {
        let nets = self;
        let (b, lr, aug) = (batch.real.dim(0)?, t.learning_rate, &t.augment);
        let (x_real, real_pair) = (&batch.real, &batch.labelled_pair);

        // discriminators, on generated samples they cannot change
        let fake = generate(&nets.g, b, t.style_mixing, rng)?;
        let fake_img = fake.image.detach();
        let real_aug = diff_augment(x_real, aug, rng)?;
        let d_real = nets.d.forward(&real_aug)?;
        let d_fake = nets.d.forward(&diff_augment(&fake_img, aug, rng)?)?;
        let d_loss = d_logistic(&d_real, &d_fake)?;
        let real_out = nets.dseg.forward(&diff_augment(real_pair, aug, rng)?)?;
        let fake_pair = label_pair(&fake_img, &fake.seg_logits.detach())?;
        let fake_out = nets.dseg.forward(&diff_augment(&fake_pair, aug, rng)?)?;
        let ds_loss = d_hinge(&logits(&real_out), &logits(&fake_out))?;
        let (d_image, d_label) = (
            finite("image discriminator", &d_loss, step)?,
            finite("image-label discriminator", &ds_loss, step)?,
        );
        let grads = (&d_loss + &ds_loss)?.backward()?;
        nets.opt_d.step(
            &nets.d.params.var_refs(),
            &nets.d.params.grads_of(&grads),
            1.0,
            lr,
        )?;
        nets.opt_dseg.step(
            &nets.dseg.params.var_refs(),
            &nets.dseg.params.grads_of(&grads),
            1.0,
            lr,
        )?;
        let mut r1 = last_r1;
        if step.is_multiple_of(t.r1_every) {
            let every = t.r1_every as f64;
            let reg = r1_penalty(|x| nets.d.forward(x), &real_aug, t.r1_gamma * every)?;
            finite("R1", &reg.surrogate, step)?;
            r1 = reg.penalty / every;
            let grads = reg.surrogate.backward()?;
            nets.opt_d.step(
                &nets.d.params.var_refs(),
                &nets.d.params.grads_of(&grads),
                1.0,
                lr,
            )?;
        }
        let real_features: Vec<Vec<Tensor>> = real_out.into_iter().map(|o| o.features).collect();

        // generator: the image-label discriminator sees the image detached, so its gradient
        // reaches the label branch and the shared trunk but not ToRGB
        let gen = generate(&nets.g, b, t.style_mixing, rng)?;
        let g_img = g_nonsaturating(&nets.d.forward(&diff_augment(&gen.image, aug, rng)?)?)?;
        let gen_pair = label_pair(&gen.image.detach(), &gen.seg_logits)?;
        let gen_out = nets.dseg.forward(&diff_augment(&gen_pair, aug, rng)?)?;
        let g_lab = g_hinge(&logits(&gen_out))?;
        let gen_features: Vec<Vec<Tensor>> = gen_out.into_iter().map(|o| o.features).collect();
        let fm = feature_matching(&real_features, &gen_features)?;
        let g_loss = ((&g_img + &g_lab)? + (&fm * t.feature_matching_weight)?)?;
        finite("generator", &g_loss, step)?;
        let grads = g_loss.backward()?;
        nets.opt_g.step(
            &nets.g.params.var_refs(),
            &nets.g.params.grads_of(&grads),
            1.0,
            lr,
        )?;
        Ok(GanLosses {
            d_image,
            d_label,
            g_image: finite("generator image", &g_img, step)?,
            g_label: finite("generator label", &g_lab, step)?,
            feature_matching: finite("feature matching", &fm, step)?,
            r1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_core::Silent;
    use radlens_io::raster::write_gray_png;

    #[test]
    fn ema_half_life_ramps_up_with_the_images_seen() {
        let mut t = GanTrainConfig {
            batch_size: 4,
            ema_kimg: 10.0,
            ema_rampup: Some(0.05),
            ..GanTrainConfig::default()
        };
        // the first step copies the generator
        assert_eq!(ema_beta(&t, 0), 0.0);
        // after 4,000 images the half-life is 200 images: 0.5^(4/200)
        assert!((ema_beta(&t, 1000) - 0.5f64.powf(0.02)).abs() < 1e-12);
        // from 200,000 images on it is the configured 10,000
        let fixed = 0.5f64.powf(4.0 / 10_000.0);
        assert!((ema_beta(&t, 60_000) - fixed).abs() < 1e-12);
        t.ema_rampup = None;
        assert!((ema_beta(&t, 0) - fixed).abs() < 1e-12);
    }

    /// A tiny nnU-Net-layout dataset of `n` 32 x 32 films with a bright "lung" square.
    fn tiny_dataset(dir: &Path, n: usize) {
        std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
        std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
        std::fs::write(
            dir.join("dataset.json"),
            r#"{"labels": {"background": 0, "right_lung": 1}, "file_ending": ".png"}"#,
        )
        .unwrap();
        for c in 0..n {
            let (img, lab): (Vec<u8>, Vec<u8>) = (0..32 * 32)
                .map(|p| {
                    let inside =
                        (8 + c % 4..20 + c % 4).contains(&(p / 32)) && (6..18).contains(&(p % 32));
                    if inside {
                        (200, 1)
                    } else {
                        (40, 0)
                    }
                })
                .unzip();
            write_gray_png(&dir.join(format!("imagesTr/c{c}_0000.png")), 32, 32, &img).unwrap();
            write_gray_png(&dir.join(format!("labelsTr/c{c}.png")), 32, 32, &lab).unwrap();
        }
    }

    fn request(data: &Path, out: &Path, steps: usize, resume: bool) -> GanTrainRequest {
        let mut model = crate::semanticgan::tests::tiny();
        model.classes = radlens_io::ClassSchema::new(["background", "right_lung"]);
        let train = GanTrainConfig {
            steps,
            batch_size: 2,
            labelled: 3,
            r1_every: 2,
            sample_every: 2,
            checkpoint_every: 2,
            encoder: super::super::config::EncoderTrainConfig {
                steps: 2,
                batch_size: 2,
                ..Default::default()
            },
            ..GanTrainConfig::default()
        };
        GanTrainRequest {
            dataset: format!("nnunet:{}", data.display()).parse().unwrap(),
            out: out.to_path_buf(),
            config: GanRunConfig {
                kind: GanKind::Semanticgan,
                model,
                train,
            },
            resume,
            steps: None,
            encoder_steps: None,
            split_file: None,
            init: None,
            device: Device::Cpu,
        }
    }

    /// Two steps, then two more resumed from the checkpoint, give the same weights and the
    /// same history as four uninterrupted steps (the encoder trained after the first two
    /// steps is trained again for the final generator); the run holds its files.
    #[test]
    fn resumed_training_matches_uninterrupted_training() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        tiny_dataset(&data, 10);
        let whole = tmp.path().join("whole");
        train_gan(request(&data, &whole, 4, false), &Silent).unwrap();
        let split = tmp.path().join("split");
        train_gan(request(&data, &split, 2, false), &Silent).unwrap();
        let mut again = request(&data, &split, 4, true);
        again.steps = Some(4);
        train_gan(again, &Silent).unwrap();
        for f in [
            "config.json",
            "split.json",
            "labels.json",
            "model.safetensors",
            "samples/step_000004.png",
            "encoder.safetensors",
            "image_discriminator.safetensors",
            "encoder_history.csv",
            "samples/encoder_000002.png",
        ] {
            assert!(whole.join(f).is_file(), "{f} missing");
        }
        let budget: LabelBudget = read_json(&whole.join("labels.json")).unwrap();
        assert_eq!(budget.labelled.len(), 3);
        assert_eq!(budget.labelled.len() + budget.unlabelled.len(), 7);
        for file in ["model.safetensors", "encoder.safetensors"] {
            same_tensors(&whole.join(file), &split.join(file));
        }
        let rows = |p: &Path| -> Vec<Vec<f64>> {
            let text = std::fs::read_to_string(p.join("history.csv")).unwrap();
            text.lines()
                .skip(1)
                .map(|l| {
                    l.split(',')
                        .enumerate()
                        .filter(|(i, _)| *i != 1)
                        .map(|(_, v)| v.parse().unwrap())
                        .collect()
                })
                .collect()
        };
        let (a, b) = (rows(&whole), rows(&split));
        assert_eq!(a.len(), 4);
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!(
                    (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                    "history {ra:?} vs {rb:?}"
                );
            }
        }
        // a new run into a used folder is refused, nothing overwritten
        let err = train_gan(request(&data, &whole, 4, false), &Silent).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");

        // the encoder resumes mid-way: two more encoder steps on `split` equal four from
        // the start of the encoder phase on a copy of `whole` without its encoder
        let more = |run: &Path| {
            let mut req = request(&data, run, 4, true);
            req.encoder_steps = Some(4);
            train_gan(req, &Silent).unwrap();
        };
        more(&split);
        for f in [
            "checkpoint/encoder_state.json",
            "checkpoint/encoder.safetensors",
            "encoder_history.csv",
        ] {
            std::fs::remove_file(whole.join(f)).unwrap();
        }
        more(&whole);
        same_tensors(
            &whole.join("encoder.safetensors"),
            &split.join("encoder.safetensors"),
        );
        let enc_rows = std::fs::read_to_string(split.join("encoder_history.csv")).unwrap();
        assert_eq!(enc_rows.lines().count(), 5, "{enc_rows}");

        // the run segments through the common predictor, at the model grid's size
        let predictor = crate::Predictor::load(&split, &Device::Cpu).unwrap();
        let img = radlens_io::XrayImage::new(40, 32, vec![0.5; 40 * 32]).unwrap();
        let pred = predictor.predict(&img, 0, 1.0, 0).unwrap();
        assert_eq!((pred.classes, pred.mean_mask.len()), (2, 32 * 32));
        // the run's inversion steps by default; encoder only when set to 0, which reads
        // the mask at the encoder's latent: another prediction than the optimised one
        let mut quick = crate::Predictor::load(&split, &Device::Cpu).unwrap();
        assert_eq!(quick.model.inversion_steps(), Some(100));
        quick.model.set_inversion_steps(0).unwrap();
        assert_eq!(quick.model.inversion_steps(), Some(0));
        let encoder_only = quick.predict(&img, 0, 1.0, 0).unwrap();
        assert_eq!(encoder_only.mean_logits.len(), pred.mean_logits.len());
        assert_ne!(encoder_only.mean_logits, pred.mean_logits);
        // without its encoder it says what is missing
        std::fs::remove_file(split.join("encoder.safetensors")).unwrap();
        let err = crate::Predictor::load(&split, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("encoder.safetensors") && err.contains("not found"),
            "{err}"
        );
    }

    /// A warm start from a folder pruned to what segmentation needs (as models/ ships
    /// one): the generator, image discriminator and encoder start from it, the split and
    /// label budget are kept, the source is recorded, and the new run resumes.
    #[test]
    fn warm_start_continues_a_model_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        tiny_dataset(&data, 10);
        let source = tmp.path().join("source");
        train_gan(request(&data, &source, 2, false), &Silent).unwrap();
        std::fs::remove_dir_all(source.join("checkpoint")).unwrap();
        // no GAN steps and a vanishing encoder learning rate: every network stays the
        // source's, unless the encoder started afresh
        let still = |out: &Path, init: Option<&Path>| {
            let mut req = request(&data, out, 0, false);
            req.init = init.map(Path::to_path_buf);
            req.config.train.encoder.learning_rate = 1e-12;
            train_gan(req, &Silent)
        };
        let warm = tmp.path().join("warm");
        still(&warm, Some(&source)).unwrap();
        let same_networks = || {
            for f in [
                "model.safetensors",
                "image_discriminator.safetensors",
                "encoder.safetensors",
            ] {
                same_tensors(&source.join(f), &warm.join(f));
            }
        };
        same_networks();
        // resumed before the encoder's first checkpoint, it starts from the source again
        for f in [
            "encoder.safetensors",
            "encoder_history.csv",
            "checkpoint/encoder.safetensors",
            "checkpoint/encoder_state.json",
        ] {
            std::fs::remove_file(warm.join(f)).unwrap();
        }
        train_gan(request(&data, &warm, 0, true), &Silent).unwrap();
        same_networks();
        let fresh = tmp.path().join("fresh");
        still(&fresh, None).unwrap();
        let moved = max_difference(
            &source.join("encoder.safetensors"),
            &fresh.join("encoder.safetensors"),
        );
        assert!(moved > 1e-3, "a fresh encoder is the source's: {moved}");
        for f in ["split.json", "labels.json"] {
            let read = |dir: &Path| std::fs::read_to_string(dir.join(f)).unwrap();
            assert_eq!(read(&source), read(&warm), "{f}");
        }
        let init = |run: &Path| {
            read_json::<GanRunInfo>(&run.join("config.json"))
                .unwrap()
                .init
        };
        let expected = GanInit {
            from: source.display().to_string(),
            generator_steps: 2,
        };
        assert_eq!(init(&warm), Some(expected.clone()));

        let mut more = request(&data, &warm, 2, true);
        more.steps = Some(2);
        train_gan(more, &Silent).unwrap();
        assert_eq!(init(&warm), Some(expected));
        let rows = std::fs::read_to_string(warm.join("history.csv")).unwrap();
        assert_eq!(rows.lines().count(), 3, "{rows}");

        // the source's split and labels or nothing: a split file or another label budget
        // is refused before any folder is made
        let refused = tmp.path().join("refused");
        let mut req = request(&data, &refused, 2, false);
        req.init = Some(source.clone());
        req.split_file = Some(source.join("split.json"));
        let err = train_gan(req, &Silent).unwrap_err().to_string();
        assert!(err.contains("split file"), "{err}");
        let mut req = request(&data, &refused, 2, false);
        req.init = Some(source.clone());
        req.config.train.labelled = 4;
        let err = train_gan(req, &Silent).unwrap_err().to_string();
        assert!(
            err.contains("labels.json") && err.contains("asks for 4"),
            "{err}"
        );
        assert!(!refused.exists());
    }

    /// The largest absolute difference between same-named tensors of two files.
    fn max_difference(a: &Path, b: &Path) -> f32 {
        let a = load_tensors(a, &Device::Cpu).unwrap();
        let b = load_tensors(b, &Device::Cpu).unwrap();
        a.iter()
            .map(|(k, v)| {
                let diff = (v - &b[k]).unwrap().abs().unwrap();
                diff.flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .fold(0.0, f32::max)
    }

    /// Asserts two safetensors files hold the same tensors up to the summation order of
    /// multi-threaded reductions.
    fn same_tensors(a: &Path, b: &Path) {
        let a = load_tensors(a, &Device::Cpu).unwrap();
        let b = load_tensors(b, &Device::Cpu).unwrap();
        assert_eq!(a.len(), b.len());
        for (k, v) in &a {
            let (x, y): (Vec<f32>, Vec<f32>) = (
                v.flatten_all().unwrap().to_vec1().unwrap(),
                b[k].flatten_all().unwrap().to_vec1().unwrap(),
            );
            // equal up to the summation order of multi-threaded reductions
            for (p, q) in x.iter().zip(&y) {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + p.abs()),
                    "{k} differs after resuming: {p} vs {q}"
                );
            }
        }
    }
}

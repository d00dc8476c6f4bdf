//! `radlens seg ...`

use crate::seg_progress::{EvalProgress, TrainProgress};
use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use radlens_io::split::SplitPart;
use radlens_io::DatasetSpec;
use radlens_seg::calibrate;
use radlens_seg::checkpoint::SegRun;
use radlens_seg::config::{ConvBackend, RunConfig};
use radlens_seg::evaluate::summary::PerClass;
use radlens_seg::evaluate::{choose_cases, evaluate, write_results, EvalHeader};
use radlens_seg::prediction_files::{predict_images, PredictRequest, PredictionWritten};
use radlens_seg::semanticgan::{GanRunConfig, GanTrainRequest};
use radlens_seg::train::{train, TrainRequest};
use radlens_seg::EvalSummary;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SegCommand {
    /// Train a U-Net or SSN on a dataset (see --config for every setting).
    Train(TrainArgs),
    /// Segment radiographs: mean mask, sample masks, uncertainty maps, overlay, areas.
    Predict(PredictArgs),
    /// Evaluate a model on a dataset: per-image CSV, summary.json and report.html.
    Eval(EvalArgs),
    /// Choose an SSN's sampling temperature on validation cases and store it with the model.
    Calibrate(CalibrateArgs),
    /// Score models on perturbed films (noise, blur, contrast, JPEG, rotation, ...), paired.
    Robustness(crate::seg_robustness::RobustnessArgs),
    /// Compare groups of patients (sex, age band, ...): gaps with CIs and permutation tests.
    Subgroups(crate::seg_subgroups::SubgroupsArgs),
    /// One model on in-domain and out-of-domain data: the Dice drop per class with CIs,
    /// and the part of it the labelling protocol explains.
    Shift(crate::seg_shift::ShiftArgs),
    /// Models scored by `seg eval` on the same cases, side by side: Dice and HD95 with CIs,
    /// paired differences from a reference with Wilcoxon tests (Holm-adjusted).
    Compare(crate::seg_compare::CompareArgs),
    /// Plot a run's training curves (history.csv, and a SemanticGAN's encoder history) into
    /// curves.html, with the training time they record.
    Curves(CurvesArgs),
}

#[derive(Args)]
pub struct CurvesArgs {
    /// Run folder of a training run (finished or still going).
    #[arg(long)]
    run: PathBuf,
    /// Output file (default: RUN/curves.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Run folder of a trained model (default: the shipped models/jsrt-ssn).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Radiographs (PNG, JPEG or DICOM).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// SSN samples to draw per image (0 for the mean only).
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// Seed for the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Scale of the samples' deviation from the mean (1 = the trained distribution, 0 = the
    /// mean). Default: the model's calibrated temperature (`seg calibrate`), else 1.
    #[arg(long)]
    temperature: Option<f64>,
    /// Pixel spacing in mm for images whose files do not record it (PNG/JPEG);
    /// areas are then also given in mm².
    #[arg(long)]
    pixel_spacing: Option<f64>,
    #[command(flatten)]
    inversion: InversionSteps,
    /// Output folder; each image gets a subfolder named after its file stem.
    #[arg(long)]
    out: PathBuf,
}

/// A model and the cases it is scored on: the options of every evaluation command.
#[derive(Args)]
pub struct ScoredCases {
    /// Run folder of a trained model (default: the shipped models/jsrt-ssn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Evaluation data as <kind>:<dir>.
    #[arg(long)]
    pub dataset: DatasetSpec,
    /// Which cases: test, val, train (from the model's split.json) or all.
    /// Default: test for the model's training dataset kind, all for others.
    #[arg(long)]
    pub split: Option<SplitPart>,
    /// Only the first N cases of the split (quick checks).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub inversion: InversionSteps,
}

/// The option that sets how hard a SemanticGAN run inverts each image.
#[derive(Args)]
pub struct InversionSteps {
    /// SemanticGAN runs: test-time optimisation steps per image (0 = the encoder's latent
    /// only; default the run's `[model] inversion`, 100). Fewer steps are faster and
    /// usually less accurate.
    #[arg(long = "inversion-steps")]
    pub steps: Option<usize>,
}

impl InversionSteps {
    /// Apply the option to the SemanticGAN models among `predictors`; an error when it was
    /// given and none is one, so that it is never silently ignored.
    pub fn apply(&self, predictors: &mut [&mut radlens_seg::Predictor]) -> Result<()> {
        let Some(steps) = self.steps else {
            return Ok(());
        };
        let mut applied = false;
        for p in predictors.iter_mut() {
            if p.model.inversion_steps().is_some() {
                p.model.set_inversion_steps(steps)?;
                applied = true;
            }
        }
        anyhow::ensure!(
            applied,
            "--inversion-steps applies to SemanticGAN runs, and no model given is one"
        );
        Ok(())
    }
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    scored: ScoredCases,
    /// SSN samples per image for GED and diversity.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Scale of the samples' deviation from the mean (1 = the trained distribution).
    /// Default: the model's calibrated temperature (`seg calibrate`), else 1.
    #[arg(long)]
    temperature: Option<f64>,
    /// Output folder for per_image.csv and summary.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct CalibrateArgs {
    /// Run folder of a trained SSN; its calibration.json is written there.
    #[arg(long)]
    model: PathBuf,
    /// Calibration data as <kind>:<dir> (the model's own validation cases by default).
    #[arg(long)]
    dataset: DatasetSpec,
    /// Which cases (from the model's split.json).
    #[arg(long, default_value = "val")]
    split: SplitPart,
    /// Samples per image.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Temperatures to try, comma-separated (default 0.05, 0.10, ..., 1.0).
    #[arg(long, value_delimiter = ',')]
    grid: Option<Vec<f64>>,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Training data as <kind>:<dir> (jsrt, covid-cxr, nnunet).
    #[arg(long)]
    dataset: DatasetSpec,
    /// Run folder for the config, checkpoints, split and history.
    #[arg(long)]
    out: PathBuf,
    /// TOML file with [model] and [train] tables; defaults give an SSN (rank 10, 20 MC samples).
    /// With `kind = "semanticgan"` (configs/jsrt-semanticgan.toml) it trains a SemanticGAN.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Use this split file (JSON of case ids) instead of drawing a stratified split.
    #[arg(long)]
    split_file: Option<PathBuf>,
    /// Train until this many epochs in total (overrides the config; with --resume, extends the run).
    #[arg(long)]
    epochs: Option<usize>,
    /// A label budget: train on only the first N of a seeded order of the training split's
    /// images, the same N images for a U-Net and a SemanticGAN (overrides the config).
    #[arg(long, conflicts_with = "resume")]
    labelled: Option<usize>,
    /// SemanticGAN only: train until this many generator steps in total.
    #[arg(long)]
    steps: Option<usize>,
    /// SemanticGAN only: train the encoder for this many steps in total (with --resume,
    /// more steps continue a finished encoder).
    #[arg(long)]
    encoder_steps: Option<usize>,
    /// Train on at most this many cases (quick checks).
    #[arg(long)]
    max_cases: Option<usize>,
    /// Start from these weights (model.safetensors of a run with the same architecture and
    /// class count, e.g. models/jsrt-ssn/model.safetensors) instead of a random initialisation.
    /// For a SemanticGAN, the run or model folder to continue (e.g. models/jsrt-semanticgan):
    /// its generator, image discriminator and encoder, its split and label budget.
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Convolution kernels: radlens (fast CPU kernels) or candle (stock ops).
    #[arg(long, value_enum)]
    conv: Option<ConvArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConvArg {
    Radlens,
    Candle,
}

impl From<ConvArg> for ConvBackend {
    fn from(c: ConvArg) -> Self {
        match c {
            ConvArg::Radlens => ConvBackend::Radlens,
            ConvArg::Candle => ConvBackend::Candle,
        }
    }
}

pub fn run(cmd: SegCommand) -> Result<()> {
    match cmd {
        SegCommand::Train(a) => train_cmd(a),
        SegCommand::Predict(a) => predict_cmd(a),
        SegCommand::Eval(a) => eval_cmd(a),
        SegCommand::Calibrate(a) => calibrate_cmd(a),
        SegCommand::Robustness(a) => crate::seg_robustness::robustness_cmd(a),
        SegCommand::Subgroups(a) => crate::seg_subgroups::subgroups_cmd(a),
        SegCommand::Shift(a) => crate::seg_shift::shift_cmd(a),
        SegCommand::Compare(a) => crate::seg_compare::compare_cmd(a),
        SegCommand::Curves(a) => curves_cmd(a),
    }
}

fn curves_cmd(a: CurvesArgs) -> Result<()> {
    let html = radlens_seg::html::curves_report(&a.run)?;
    let out = a
        .out
        .unwrap_or_else(|| a.run.join(radlens_seg::html::CURVES_FILE));
    radlens_core::atomic::write_atomic(&out, html.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    if let Some(path) = a.config.as_ref().filter(|p| GanRunConfig::is_gan_config(p)) {
        if a.epochs.is_some() || a.max_cases.is_some() || a.conv.is_some() {
            anyhow::bail!(
                "--epochs, --max-cases and --conv apply to U-Net and SSN configs; a SemanticGAN trains for --steps"
            );
        }
        let mut config = GanRunConfig::from_toml(path)?;
        if let Some(n) = a.labelled {
            config.train.labelled = n;
        }
        return crate::seg_gan::train(GanTrainRequest {
            config,
            dataset: a.dataset,
            out: a.out,
            resume: a.resume,
            steps: a.steps,
            encoder_steps: a.encoder_steps,
            split_file: a.split_file,
            init: a.init,
            device: Device::Cpu,
        });
    }
    if a.steps.is_some() || a.encoder_steps.is_some() {
        anyhow::bail!(
            "--steps and --encoder-steps apply to SemanticGAN configs; a U-Net trains for --epochs"
        );
    }
    let mut cfg = match &a.config {
        Some(p) => RunConfig::from_toml(p)?,
        None => RunConfig::default(),
    };
    if let Some(c) = a.conv {
        cfg.train.conv_backend = c.into();
    }
    if a.labelled.is_some() {
        cfg.train.labelled = a.labelled;
    }
    let outcome = train(
        TrainRequest {
            dataset: a.dataset,
            out: a.out.clone(),
            model: cfg.model,
            train: cfg.train,
            resume: a.resume,
            epochs: a.epochs,
            split_file: a.split_file,
            max_train_cases: a.max_cases,
            init: a.init,
            device: Device::Cpu,
        },
        &TrainProgress::default(),
    )
    .with_context(|| format!("training into {}", a.out.display()))?;
    println!(
        "best validation mean Dice {:.4} at epoch {}; model saved in {}",
        outcome.best_val_dice,
        outcome.best_epoch,
        outcome.run.display()
    );
    Ok(())
}

/// The model folder: the one given, else the shipped model (looked up from the
/// working directory, then from the source tree this binary was built in).
fn model_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let candidates = [
        PathBuf::from(crate::SHIPPED_MODEL),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(crate::SHIPPED_MODEL),
    ];
    candidates
        .iter()
        .find(|p| p.join("config.json").is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no --model given and the shipped model {} was not found",
                crate::SHIPPED_MODEL
            )
        })
}

impl ScoredCases {
    /// The cases of `dataset` (this struct's `dataset`, opened) that the model in `dir` is
    /// scored on.
    pub fn cases<'d>(
        &self,
        dir: &std::path::Path,
        dataset: &'d radlens_io::Dataset,
    ) -> Result<radlens_seg::evaluate::EvalCases<'d>> {
        Ok(choose_cases(
            &SegRun::at(dir),
            &self.dataset,
            dataset,
            self.split,
            self.limit,
        )?)
    }
}

pub(crate) fn load_predictor(model: Option<PathBuf>) -> Result<(PathBuf, radlens_seg::Predictor)> {
    let dir = model_dir(model)?;
    let predictor = radlens_seg::Predictor::load(&dir, &Device::Cpu)?;
    Ok((dir, predictor))
}

/// The model of `model` (default the shipped one) with `--inversion-steps` applied.
pub(crate) fn load_scored_predictor(
    model: Option<PathBuf>,
    inversion: &InversionSteps,
) -> Result<(PathBuf, radlens_seg::Predictor)> {
    let (dir, mut predictor) = load_predictor(model)?;
    inversion.apply(&mut [&mut predictor])?;
    Ok((dir, predictor))
}

/// The temperature asked for, else the model's own; checked to be usable.
pub(crate) fn temperature(asked: Option<f64>, predictor: &radlens_seg::Predictor) -> Result<f64> {
    let t = asked.unwrap_or(predictor.temperature);
    anyhow::ensure!(
        t >= 0.0 && t.is_finite(),
        "--temperature must be a number >= 0, got {t}"
    );
    Ok(t)
}

fn predict_cmd(a: PredictArgs) -> Result<()> {
    // Read every image first so that a bad input stops the run before anything is written.
    let mut images = a
        .images
        .iter()
        .map(|p| radlens_io::read_image(p).map(|i| (p.clone(), i)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(mm) = a.pixel_spacing {
        anyhow::ensure!(
            mm > 0.0 && mm.is_finite(),
            "--pixel-spacing must be a positive number of mm, got {mm}"
        );
    }
    for (_, img) in &mut images {
        if img.spacing.is_none() {
            img.spacing = a.pixel_spacing.map(radlens_io::PixelSpacing::isotropic);
        }
    }
    let (_, predictor) = load_scored_predictor(a.model, &a.inversion)?;
    let req = PredictRequest {
        images: &images,
        out: &a.out,
        samples: a.samples,
        temperature: temperature(a.temperature, &predictor)?,
        seed: a.seed,
    };
    predict_images(&predictor, &req, &|w: &PredictionWritten| {
        println!("{}: {}", w.image.display(), w.dir.display())
    })?;
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let (dir, predictor) = load_scored_predictor(a.scored.model.clone(), &a.scored.inversion)?;
    let temperature = temperature(a.temperature, &predictor)?;
    let dataset = a.scored.dataset.open()?;
    let cases = a.scored.cases(&dir, &dataset)?;
    let ev = evaluate(
        &predictor,
        &dataset,
        &cases.samples,
        a.samples,
        temperature,
        &EvalProgress::default(),
    )?;
    let header = EvalHeader {
        inversion_steps: predictor.model.inversion_steps(),
        ..EvalHeader::new(
            &dir,
            &a.scored.dataset,
            cases.part,
            predictor.model.image_size(),
            temperature,
        )
    };
    let summary = ev.summary(header);
    write_results(&a.out, &ev, &summary)?;
    print_summary(&summary);
    println!("wrote {}", a.out.display());
    Ok(())
}

fn calibrate_cmd(a: CalibrateArgs) -> Result<()> {
    let predictor = radlens_seg::Predictor::load(&a.model, &Device::Cpu)?;
    let dataset = a.dataset.open()?;
    let run = SegRun::at(&a.model);
    let cases = choose_cases(&run, &a.dataset, &dataset, Some(a.split), None)?;
    let grid = a.grid.unwrap_or_else(calibrate::default_grid);
    let scores = calibrate::score_temperatures(
        &predictor,
        &dataset,
        &cases.samples,
        &grid,
        a.samples,
        &EvalProgress::default(),
    )?;
    let chosen = calibrate::choose_temperature(&scores);
    println!("temperature  GED^2   diversity  HM-IoU  implausible");
    for s in &scores {
        println!(
            "{:>11.2}  {:.4}  {:.4}     {:.4}  {:.4}{}",
            s.temperature,
            s.ged_squared,
            s.sample_diversity,
            s.hm_iou,
            s.implausible_sample_fraction,
            if s.temperature == chosen {
                "  <- chosen"
            } else {
                ""
            }
        );
    }
    run.write_calibration(&calibrate::TemperatureCalibration {
        temperature: chosen,
        criterion: calibrate::CRITERION.to_string(),
        dataset: a.dataset.to_string(),
        split: cases.part,
        images: cases.samples.len(),
        samples_per_image: a.samples,
        scores,
    })?;
    println!("wrote {}", run.calibration().display());
    Ok(())
}

fn print_summary(s: &EvalSummary) {
    let unit = &s.distance_unit;
    let m = &s.metrics;
    println!("{} images", s.images);
    let four = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    for (c, dice) in &m.dice {
        let mean = |table: &PerClass| four(table.get(c).and_then(Option::as_ref).map(|s| s.mean));
        let dice = dice.as_ref();
        println!(
            "  {c:<18} Dice {} [{}, {}]  IoU {}  HD95 {} {unit}  ASSD {} {unit}",
            four(dice.map(|s| s.mean)),
            four(dice.map(|s| s.ci95_low)),
            four(dice.map(|s| s.ci95_high)),
            mean(&m.iou),
            mean(&m.hd95),
            mean(&m.assd)
        );
    }
    println!("  temperature {}", s.header.temperature);
    let st = &s.stochastic;
    for (v, label) in [
        (&st.ged_squared, "GED^2"),
        (&st.sample_diversity, "sample diversity"),
        (&st.diversity_low_rank, "diversity, low-rank part only"),
        (&st.diversity_diagonal, "diversity, diagonal part only"),
        (&st.hm_iou, "HM-IoU"),
        (
            &st.implausible_sample_fraction,
            "implausible-sample fraction",
        ),
        (&s.calibration.ece_10_bins, "ECE"),
        (&s.calibration.nll_per_pixel, "NLL/pixel"),
    ] {
        if let Some(v) = v {
            println!("  {label}: {:.4}", v.mean);
        }
    }
}

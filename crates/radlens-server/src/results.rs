//! Stored analyses as the API shows them, and as the engine needs them again: search,
//! review and a later study's comparison rebuild an engine `Analysis` from the stored
//! file and masks instead of running the model again.

use crate::db::records::{self, AnalysisRow, ImageKind, Job, SentenceRow, SignedReport, Study};
use crate::error::{Result, ServerError};
use crate::overlay::{label_from_png, CtrLines, SAMPLE_COLOURS};
use crate::AppState;
use radlens_report::analysis::Analysis;
use radlens_report::draft::{Change, Confidence, Draft, PriorLink};
use radlens_report::findings::Evidence;
use radlens_report::measure::{Masks, Measurements};
use radlens_report::Observation;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// An overlay the viewer can toggle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayInfo {
    /// `structures`, `uncertainty` or `sample-<k>`.
    pub name: String,
    pub label: String,
    pub url: String,
    /// CSS colour of a sample outline.
    pub colour: Option<String>,
}

/// What the model found on a study, at one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisView {
    pub id: i64,
    pub model_version: String,
    pub created_at: String,
    pub measurements: Measurements,
    pub ctr_lines: Option<CtrLines>,
    pub overlays: Vec<OverlayInfo>,
    /// Class names by id, with their display colours, for the legend.
    pub legend: Vec<(String, String)>,
}

/// `GET /api/studies/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyView {
    pub study: Study,
    pub job: Option<Job>,
    pub analysis: Option<AnalysisView>,
}

/// A drafted sentence as it stands, with the engine's evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceView {
    #[serde(flatten)]
    pub row: SentenceRow,
    pub confidence: Confidence,
    pub observation: Option<Observation>,
    pub evidence: Vec<Evidence>,
    pub prior: Vec<PriorLink>,
}

/// `GET /api/studies/{id}/draft`: the AI draft with each sentence's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportView {
    pub study_id: i64,
    pub analysis_id: i64,
    pub model_version: String,
    pub ai_generated: bool,
    pub not_assessable: Option<String>,
    pub caveat: String,
    pub changes: Vec<Change>,
    pub sentences: Vec<SentenceView>,
    pub signed: Option<SignedReport>,
}

pub fn css(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The study, or 404.
pub fn study(c: &Connection, id: i64) -> Result<Study> {
    records::study(c, id)?.ok_or_else(|| ServerError::NotFound(format!("no study {id}")))
}

/// The study's analysis at the running model version, or 409 saying where its job stands.
pub fn ready_analysis(c: &Connection, state: &AppState, study: i64) -> Result<AnalysisRow> {
    self::study(c, study)?;
    if let Some(a) = records::analysis(c, study, &state.engine.version)? {
        return Ok(a);
    }
    let why = match records::latest_job(c, study)? {
        Some(j) if j.model_version == state.engine.version => match j.error {
            Some(e) => format!("its analysis failed: {e}"),
            None => format!(
                "its analysis is {} ({:.0}%, {})",
                j.state.as_str(),
                100.0 * j.progress,
                j.stage
            ),
        },
        _ => "it has not been analysed with this model (POST /api/studies/{id}/analyse)".into(),
    };
    Err(ServerError::Conflict(format!("study {study}: {why}")))
}

pub fn analysis_view(c: &Connection, state: &AppState, row: &AnalysisRow) -> Result<AnalysisView> {
    let samples = records::count_images(c, row.id, ImageKind::Outline)?;
    let base = format!("/api/studies/{}/overlays", row.study_id);
    let mut overlays = vec![
        OverlayInfo {
            name: "structures".into(),
            label: "Structures".into(),
            url: format!("{base}/structures"),
            colour: None,
        },
        OverlayInfo {
            name: "uncertainty".into(),
            label: "SSN uncertainty".into(),
            url: format!("{base}/uncertainty"),
            colour: None,
        },
    ];
    for k in 0..samples {
        overlays.push(OverlayInfo {
            name: format!("sample-{k}"),
            label: format!("SSN sample {}", k + 1),
            url: format!("{base}/sample-{k}"),
            colour: Some(css(SAMPLE_COLOURS[k as usize % SAMPLE_COLOURS.len()])),
        });
    }
    Ok(AnalysisView {
        id: row.id,
        model_version: row.model_version.clone(),
        created_at: row.created_at.clone(),
        measurements: serde_json::from_str(&row.measurements)?,
        ctr_lines: row
            .ctr_lines
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
        overlays,
        legend: state
            .engine
            .classes
            .iter()
            .skip(1)
            .map(|n| (n.clone(), css(crate::overlay::colour_of(n))))
            .collect(),
    })
}

pub fn report_view(c: &Connection, row: &AnalysisRow) -> Result<ReportView> {
    let draft: Draft = serde_json::from_str(&row.draft)?;
    let sentences = records::sentences(c, row.id)?
        .into_iter()
        .map(|r| {
            let d = draft.sentences.get(r.position as usize);
            SentenceView {
                confidence: d.map_or(Confidence::Context, |d| d.confidence),
                observation: d.and_then(|d| d.observation),
                evidence: d.map_or_else(Vec::new, |d| d.evidence.clone()),
                prior: d.map_or_else(Vec::new, |d| d.prior.clone()),
                row: r,
            }
        })
        .collect();
    Ok(ReportView {
        study_id: row.study_id,
        analysis_id: row.id,
        model_version: row.model_version.clone(),
        ai_generated: draft.ai_generated,
        not_assessable: draft.not_assessable,
        caveat: draft.caveat,
        changes: draft.changes,
        sentences,
        signed: records::latest_signed(c, row.id)?,
    })
}

/// Rebuild the engine's view of a stored analysis (reads the study's file again).
pub fn rebuild(state: &AppState, row: &AnalysisRow) -> Result<Analysis> {
    let (stored, mean, samples) = {
        let c = state.db.read();
        (
            records::stored_name(&c, row.study_id)?,
            records::analysis_image(&c, row.id, ImageKind::MeanMask, 0)?,
            records::analysis_images(&c, row.id, ImageKind::SampleMask)?,
        )
    };
    let mean = mean
        .ok_or_else(|| ServerError::Internal(format!("analysis {} has no stored mask", row.id)))?;
    let path = state.studies_dir.join(&stored);
    let image = radlens_io::read_image(&path)
        .map_err(|e| ServerError::Internal(format!("stored study file: {e}")))?;
    Ok(Analysis {
        path,
        image,
        anatomy: Masks {
            mean: label_from_png(&mean)?,
            samples: samples
                .iter()
                .map(|p| label_from_png(p))
                .collect::<Result<_>>()?,
        },
        anatomy_ids: state.engine.models.anatomy.ids,
        opacity: None,
        measurements: serde_json::from_str(&row.measurements)?,
    })
}

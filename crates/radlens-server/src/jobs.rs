//! Inference as background jobs: one worker runs them in order on a blocking thread,
//! writing its stage and progress to the job's row (the page polls it), and stores the
//! analysis, its overlays and the draft in one transaction at the end. Jobs a stopped
//! server left unfinished run again at start.

use crate::db::records::{self, ImageKind, Job, JobState, NewAnalysis};
use crate::error::{Result, ServerError};
use crate::overlay;
use crate::results::rebuild;
use crate::AppState;
use radlens_report::analysis::{analyse_image, Analysis};
use radlens_report::draft::{draft, DraftInputs};
use radlens_report::text::Section;
use std::sync::Arc;
use tokio::sync::mpsc;

/// SSN samples drawn as outlines in the viewer (all samples feed the uncertainty map).
pub const OUTLINED_SAMPLES: usize = 4;

/// Queue an analysis of `study` with the running model; a cached analysis answers at
/// once with a job that is already done.
pub fn enqueue(state: &AppState, study: i64) -> Result<Job> {
    let c = state.db.lock();
    crate::results::study(&c, study)?;
    let version = &state.engine.version;
    let id = records::insert_job(&c, study, version)?;
    if records::analysis(&c, study, version)?.is_some() {
        records::update_job(&c, id, JobState::Done, "cached result", 1.0, None)?;
    } else {
        state
            .jobs
            .send(id)
            .map_err(|_| ServerError::Internal("the inference worker has stopped".into()))?;
    }
    records::job(&c, id)?.ok_or_else(|| ServerError::Internal(format!("job {id} vanished")))
}

/// Run queued jobs one at a time until the channel closes.
pub async fn worker(state: Arc<AppState>, mut rx: mpsc::UnboundedReceiver<i64>) {
    while let Some(id) = rx.recv().await {
        let s = state.clone();
        let outcome = tokio::task::spawn_blocking(move || run(&s, id)).await;
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the analysis crashed: {e}"),
        };
        tracing::warn!(job = id, %error, "inference job failed");
        let c = state.db.lock();
        if let Err(e) = records::update_job(&c, id, JobState::Failed, "failed", 0.0, Some(&error)) {
            tracing::error!(job = id, %e, "cannot record the job's failure");
        }
    }
}

fn stage(state: &AppState, job: i64, stage: &str, progress: f64) -> Result<()> {
    records::update_job(
        &state.db.lock(),
        job,
        JobState::Running,
        stage,
        progress,
        None,
    )?;
    Ok(())
}

/// The patient's latest earlier study analysed with this model, with its signed report.
fn prior_of(
    state: &AppState,
    study: &records::Study,
) -> Result<Option<(Analysis, Option<String>)>> {
    let Some(date) = &study.study_date else {
        return Ok(None);
    };
    let found = {
        let c = state.db.lock();
        let mut found = None;
        for s in records::studies(&c, Some(study.patient_id))? {
            if s.study_date.as_ref().is_some_and(|d| d < date) {
                if let Some(a) = records::analysis(&c, s.id, &state.engine.version)? {
                    let signed = records::latest_signed(&c, a.id)?
                        .map(|r| format!("{} {}", r.findings, r.impression));
                    found = Some((a, signed));
                }
            }
        }
        found
    };
    found
        .map(|(row, signed)| Ok((rebuild(state, &row)?, signed)))
        .transpose()
}

fn section_name(s: Section) -> &'static str {
    match s {
        Section::Indication => "indication",
        Section::Comparison => "comparison",
        Section::Technique => "technique",
        Section::Findings => "findings",
        Section::Impression => "impression",
        Section::Body => "body",
    }
}

fn run(state: &AppState, job: i64) -> Result<()> {
    let (study, stored) = {
        let c = state.db.lock();
        let j =
            records::job(&c, job)?.ok_or_else(|| ServerError::NotFound(format!("no job {job}")))?;
        (
            crate::results::study(&c, j.study_id)?,
            records::stored_name(&c, j.study_id)?,
        )
    };
    let engine = &state.engine;
    stage(state, job, "reading the image", 0.05)?;
    let path = state.studies_dir.join(&stored);
    let image = radlens_io::read_image(&path)
        .map_err(|e| ServerError::Internal(format!("study {}: {e}", study.id)))?;
    let n = engine.models.sampling.samples;
    stage(
        state,
        job,
        &format!("segmenting: mean and {n} SSN samples"),
        0.15,
    )?;
    let a = analyse_image(&engine.models, &path, image)?;
    stage(state, job, "comparing with the prior and drafting", 0.7)?;
    let prior = prior_of(state, &study)?;
    let inputs = DraftInputs {
        prior: prior.as_ref().map(|(p, _)| p),
        prior_report: prior.as_ref().and_then(|(_, r)| r.as_deref()),
        ..DraftInputs::default()
    };
    let d = draft(&a, inputs, &engine.labeler)?;
    stage(state, job, "rendering overlays", 0.8)?;
    let classes = engine.classes.len();
    let mut images = vec![
        (ImageKind::MeanMask, 0, overlay::label_png(&a.anatomy.mean)?),
        (
            ImageKind::Structures,
            0,
            overlay::structures(&a.anatomy.mean, &engine.classes)?,
        ),
        (
            ImageKind::Uncertainty,
            0,
            overlay::uncertainty(&a.anatomy.samples, classes)?,
        ),
    ];
    for (k, s) in a.anatomy.samples.iter().enumerate() {
        images.push((ImageKind::SampleMask, k as i64, overlay::label_png(s)?));
        if k < OUTLINED_SAMPLES {
            let colour = overlay::SAMPLE_COLOURS[k % overlay::SAMPLE_COLOURS.len()];
            images.push((ImageKind::Outline, k as i64, overlay::outline(s, colour)?));
        }
    }
    let lines =
        overlay::ctr_lines(&a.anatomy.mean, a.anatomy_ids).filter(|_| a.measurements.ctr.is_some());
    let new = NewAnalysis {
        study_id: study.id,
        model_version: &engine.version,
        measurements: serde_json::to_string(&a.measurements)?,
        draft: serde_json::to_string(&d)?,
        ctr_lines: lines.map(|l| serde_json::to_string(&l)).transpose()?,
        images,
        sentences: d
            .sentences
            .iter()
            .map(|s| (section_name(s.section).to_string(), s.text.clone()))
            .collect(),
    };
    records::insert_analysis(&mut state.db.lock(), &new, job)?;
    tracing::info!(job, study = study.id, "analysis stored");
    Ok(())
}

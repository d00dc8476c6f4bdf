//! The JSON API. Handlers check their inputs, read through the database's read-only
//! connections, take the writer's lock for single statements or one transaction, and
//! run anything that decodes images or copies blobs on a blocking thread. Pages a browser
//! polls or reopens carry entity tags, so an unchanged one is answered 304 without a body.

use crate::auth::{Actor, Permission};
use crate::db::accounts::AuditAction;
use crate::db::records::{self, EditAction, ImageKind, Job, Patient, SentenceEdit, SignedReport};
use crate::error::{Result, ServerError};
use crate::http_cache;
use crate::results::{self, SentenceView, StudyView};
use crate::upload::{self, Upload};
use crate::{fhir, jobs, AppState};
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Multipart, Query, RawPathParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use radlens_report::review::Review;
use radlens_report::search::SearchResult;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub type Shared = State<Arc<AppState>>;

/// Longest text a person may save in one sentence, and in a report under review.
const MAX_SENTENCE: usize = 2_000;
const MAX_REPORT: usize = 20_000;

/// A numeric path parameter; `what` names it in the error.
pub(crate) fn path_id(p: &RawPathParams, key: &str, what: &str) -> Result<i64> {
    let raw = p
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| ServerError::Internal(format!("route without '{key}'")))?;
    match raw.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ServerError::BadRequest(format!(
            "{what} id '{}' is not a positive integer",
            raw.escape_debug()
        ))),
    }
}

pub(crate) fn body<T>(b: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    b.map(|Json(v)| v)
        .map_err(|e| ServerError::BadRequest(format!("request body: {}", e.body_text())))
}

pub(crate) fn bounded_text(raw: &str, max: usize, what: &str) -> Result<String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(ServerError::BadRequest(format!(
            "{what} must be 1 to {max} characters (got {})",
            t.chars().count()
        )));
    }
    Ok(t.to_string())
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Internal(format!("worker thread: {e}")))?
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub model_version: String,
    pub schema_version: usize,
}

pub async fn healthz(State(s): Shared) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        model_version: s.engine.version.clone(),
        schema_version: crate::db::SCHEMA_VERSION,
    })
}

/// `v` as JSON with its entity tag; browsers revalidate it on every use.
pub(crate) fn tagged_json<T: Serialize>(req: &HeaderMap, v: &T) -> Result<Response> {
    let body = serde_json::to_vec(v)?;
    let etag = http_cache::etag_of(&body);
    Ok(http_cache::conditional(
        req,
        &etag,
        "application/json",
        "private, no-cache",
        Bytes::from(body),
    ))
}

pub async fn list_patients(State(s): Shared) -> Result<Json<Vec<Patient>>> {
    Ok(Json(records::patients(&s.db.read())?))
}

pub async fn patient_history(
    State(s): Shared,
    p: RawPathParams,
) -> Result<Json<crate::timeline::PatientHistory>> {
    let id = path_id(&p, "id", "patient")?;
    let st = s.clone();
    Ok(Json(
        blocking(move || crate::timeline::history(&st, id)).await?,
    ))
}

/// Answered as `Vec<`[`records::Study`]`>`.
pub async fn list_studies(State(s): Shared, req: HeaderMap) -> Result<Response> {
    tagged_json(&req, &records::studies(&s.db.read(), None)?)
}

/// `POST /api/studies` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub id: i64,
    pub patient_id: i64,
    pub job: Job,
}

fn multipart_error(status: StatusCode, text: String) -> ServerError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ServerError::TooLarge(format!("upload: {text}")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ServerError::UnsupportedType(format!("upload: {text}"))
        }
        _ => ServerError::BadRequest(format!("upload: {text}")),
    }
}

/// Read the multipart fields `file` (required), `patient_id`, `study_date`, `view`.
async fn read_upload(mut m: Multipart, max: usize) -> Result<Upload> {
    let mut up = Upload::default();
    let mut has_file = false;
    let too_large =
        || ServerError::TooLarge(format!("upload: larger than the limit of {max} bytes"));
    while let Some(field) = m
        .next_field()
        .await
        .map_err(|e| multipart_error(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(e.status(), e.body_text()))?;
        if bytes.len() > max {
            return Err(too_large());
        }
        let text = || {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ServerError::BadRequest(format!("upload field '{name}' is not UTF-8")))
        };
        match name.as_str() {
            "file" => {
                up.file_name = file_name.unwrap_or_default();
                up.bytes = bytes.to_vec();
                has_file = true;
            }
            "patient_id" => up.patient_id = Some(text()?),
            "study_date" => up.study_date = Some(text()?),
            "view" => up.view = Some(text()?),
            other => {
                return Err(ServerError::BadRequest(format!(
                    "unknown upload field '{}' (expected file, patient_id, study_date, view)",
                    other.escape_debug()
                )))
            }
        }
    }
    if !has_file || up.bytes.is_empty() {
        return Err(ServerError::BadRequest(
            "upload: the multipart field 'file' is missing or empty".into(),
        ));
    }
    Ok(up)
}

pub async fn create_study(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    m: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Created>)> {
    s.authorize(&actor, Permission::Upload, None)?;
    let m = m.map_err(|e| multipart_error(e.status(), e.body_text()))?;
    let up = read_upload(m, s.max_upload).await?;
    let dir = s.studies_dir.clone();
    let new = blocking(move || upload::ingest(&dir, up)).await?;
    let id = records::insert_study(&mut s.db.lock(), &new)?;
    tracing::info!(study = id, patient = %new.patient_key, format = new.format.as_str(), "study uploaded");
    let detail = format!(
        "uploaded {} ({}) for patient {}",
        new.file_name,
        new.format.as_str(),
        new.patient_key
    );
    s.audit(&actor, AuditAction::Upload, Some(id), &detail)?;
    let job = jobs::enqueue(&s, id)?;
    let patient_id = results::study(&s.db.lock(), id)?.patient_id;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id,
            patient_id,
            job,
        }),
    ))
}

/// Answered as [`StudyView`].
pub async fn get_study(State(s): Shared, req: HeaderMap, p: RawPathParams) -> Result<Response> {
    let id = path_id(&p, "id", "study")?;
    let view = {
        let c = s.db.read();
        let study = results::study(&c, id)?;
        let analysis = records::analysis(&c, id, &s.engine.version)?
            .map(|a| results::analysis_view(&c, &s, &a))
            .transpose()?;
        StudyView {
            study,
            job: records::latest_job(&c, id)?,
            analysis,
        }
    };
    tagged_json(&req, &view)
}

pub async fn analyse(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    p: RawPathParams,
) -> Result<(StatusCode, Json<Job>)> {
    let id = path_id(&p, "id", "study")?;
    s.authorize(&actor, Permission::Upload, Some(id))?;
    let job = jobs::enqueue(&s, id)?;
    let detail = format!("job {} ({})", job.id, job.model_version);
    s.audit(&actor, AuditAction::Analyse, Some(id), &detail)?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

pub async fn get_job(State(s): Shared, p: RawPathParams) -> Result<Json<Job>> {
    let id = path_id(&p, "id", "job")?;
    records::job(&s.db.read(), id)?
        .map(Json)
        .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))
}

/// Cache headers for content that never changes under its URL.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// The display pixels: u16 little endian, row-major, width and height as in the study.
/// Served from memory after the first read (a study's pixels never change).
pub async fn pixels(State(s): Shared, req: HeaderMap, p: RawPathParams) -> Result<Response> {
    let id = path_id(&p, "id", "study")?;
    let entry = match s.pixels.get(id) {
        Some(e) => e,
        None => {
            let st = s.clone();
            blocking(move || {
                let data = records::study_pixels(&st.db.read(), id)?
                    .ok_or_else(|| ServerError::NotFound(format!("no study {id}")))?;
                Ok(st.pixels.insert(id, Bytes::from(data)))
            })
            .await?
        }
    };
    Ok(http_cache::conditional(
        &req,
        &entry.etag,
        "application/octet-stream",
        IMMUTABLE,
        entry.body,
    ))
}

pub async fn overlay(State(s): Shared, p: RawPathParams) -> Result<Response> {
    let id = path_id(&p, "id", "study")?;
    let name = p
        .iter()
        .find(|(k, _)| *k == "name")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let (kind, idx) = match name.as_str() {
        "structures" => (ImageKind::Structures, 0),
        "uncertainty" => (ImageKind::Uncertainty, 0),
        n => match n
            .strip_prefix("sample-")
            .and_then(|k| k.parse::<i64>().ok())
        {
            Some(k) if k >= 0 => (ImageKind::Outline, k),
            _ => {
                return Err(ServerError::NotFound(format!(
                    "no overlay '{}' (structures, uncertainty, sample-<k>)",
                    n.escape_debug()
                )))
            }
        },
    };
    let c = s.db.read();
    let a = results::ready_analysis(&c, &s, id)?;
    let png = records::analysis_image(&c, a.id, kind, idx)?
        .ok_or_else(|| ServerError::NotFound(format!("study {id} has no overlay '{name}'")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        png,
    )
        .into_response())
}

/// Answered as [`results::ReportView`].
pub async fn get_draft(State(s): Shared, req: HeaderMap, p: RawPathParams) -> Result<Response> {
    let id = path_id(&p, "id", "study")?;
    let view = {
        let c = s.db.read();
        let a = results::ready_analysis(&c, &s, id)?;
        results::report_view(&c, &a)?
    };
    tagged_json(&req, &view)
}

/// `POST /api/studies/{id}/sentences/{sid}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditRequest {
    pub action: EditAction,
    /// The new text, for `edit`.
    pub text: Option<String>,
}

/// A sentence's edits are recorded under the signed-in user's name.
pub async fn edit_sentence(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    p: RawPathParams,
    b: std::result::Result<Json<EditRequest>, JsonRejection>,
) -> Result<Json<SentenceView>> {
    let id = path_id(&p, "id", "study")?;
    let sid = path_id(&p, "sid", "sentence")?;
    s.authorize(&actor, Permission::Report, Some(id))?;
    let req = body(b)?;
    let who = actor.user.username.clone();
    let text = match (req.action, req.text.as_deref()) {
        (EditAction::Edit, Some(t)) => Some(bounded_text(t, MAX_SENTENCE, "sentence text")?),
        (EditAction::Edit, None) => {
            return Err(ServerError::BadRequest("an edit needs its 'text'".into()))
        }
        _ => None,
    };
    let mut c = s.db.lock();
    let a = results::ready_analysis(&c, &s, id)?;
    records::edit_sentence(&mut c, a.id, sid, req.action, text.as_deref(), &who)?
        .ok_or_else(|| ServerError::NotFound(format!("study {id} has no sentence {sid}")))?;
    tracing::info!(study = id, sentence = sid, action = req.action.as_str(), author = %who, "sentence edited");
    let view = results::report_view(&c, &a)?;
    drop(c);
    let detail = format!("sentence {sid}: {}", req.action.as_str());
    s.audit(&actor, AuditAction::SentenceEdit, Some(id), &detail)?;
    view.sentences
        .into_iter()
        .find(|x| x.row.id == sid)
        .map(Json)
        .ok_or_else(|| ServerError::Internal(format!("sentence {sid} vanished")))
}

pub async fn edits(State(s): Shared, p: RawPathParams) -> Result<Json<Vec<SentenceEdit>>> {
    let id = path_id(&p, "id", "study")?;
    let c = s.db.read();
    let a = results::ready_analysis(&c, &s, id)?;
    Ok(Json(records::sentence_edits(&c, a.id)?))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    pub signed: SignedReport,
    /// AI sentences nobody accepted, edited or rejected: left out of the signed text.
    pub left_out_pending: usize,
}

/// Sign the report as it stands (accepted and edited sentences, by section) in the
/// signed-in user's name.
pub async fn sign(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    p: RawPathParams,
) -> Result<Json<Signed>> {
    use records::SentenceStatus as St;
    let id = path_id(&p, "id", "study")?;
    s.authorize(&actor, Permission::Report, Some(id))?;
    let who = actor.user.username.clone();
    let c = s.db.lock();
    let a = results::ready_analysis(&c, &s, id)?;
    let rows = records::sentences(&c, a.id)?;
    let kept = |impression: bool| {
        rows.iter()
            .filter(|r| matches!(r.status, St::Accepted | St::Edited))
            .filter(|r| (r.section == "impression") == impression)
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    records::insert_signed(&c, a.id, &who, &kept(false), &kept(true))?;
    let signed = records::latest_signed(&c, a.id)?
        .ok_or_else(|| ServerError::Internal("signed report vanished".into()))?;
    tracing::info!(study = id, author = %who, version = signed.version, "report signed");
    drop(c);
    let detail = format!("signed report version {}", signed.version);
    s.audit(&actor, AuditAction::Sign, Some(id), &detail)?;
    Ok(Json(Signed {
        signed,
        left_out_pending: rows.iter().filter(|r| r.status == St::Pending).count(),
    }))
}

pub async fn fhir_report(State(s): Shared, p: RawPathParams) -> Result<Response> {
    let id = path_id(&p, "id", "study")?;
    let c = s.db.read();
    let study = results::study(&c, id)?;
    let a = results::ready_analysis(&c, &s, id)?;
    let signed = records::latest_signed(&c, a.id)?.ok_or_else(|| {
        ServerError::Conflict(format!("study {id}: the report is not signed yet"))
    })?;
    let m = serde_json::from_str(&a.measurements)?;
    let r = fhir::diagnostic_report(&study, &signed, &m, &a.model_version);
    Ok((
        [(header::CONTENT_TYPE, "application/fhir+json")],
        serde_json::to_vec_pretty(&r)?,
    )
        .into_response())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewRequest {
    pub text: String,
}

/// Check a report a person wrote against the image; the flags are kept with the analysis.
pub async fn review(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    p: RawPathParams,
    b: std::result::Result<Json<ReviewRequest>, JsonRejection>,
) -> Result<Json<Review>> {
    let id = path_id(&p, "id", "study")?;
    s.authorize(&actor, Permission::Report, Some(id))?;
    let text = bounded_text(&body(b)?.text, MAX_REPORT, "report text")?;
    let a = results::ready_analysis(&s.db.read(), &s, id)?;
    let st = s.clone();
    let r = blocking(move || {
        let analysis = results::rebuild(&st, &a)?;
        let r = radlens_report::review::review(&analysis, &text, &st.engine.labeler)?;
        records::insert_review(&st.db.lock(), a.id, &text, &serde_json::to_string(&r)?)?;
        Ok(r)
    })
    .await?;
    let detail = format!("reviewed a report: {} flags", r.flags.len());
    s.audit(&actor, AuditAction::Review, Some(id), &detail)?;
    Ok(Json(r))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchQuery {
    pub q: String,
}

pub async fn search(
    State(s): Shared,
    p: RawPathParams,
    q: std::result::Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchResult>> {
    let id = path_id(&p, "id", "study")?;
    let Query(q) = q.map_err(|e| ServerError::BadRequest(format!("query: {}", e.body_text())))?;
    let query = bounded_text(&q.q, 200, "search query 'q'")?;
    let a = results::ready_analysis(&s.db.read(), &s, id)?;
    let st = s.clone();
    let r = blocking(move || {
        let analysis = results::rebuild(&st, &a)?;
        Ok(radlens_report::search::search(&analysis, &query))
    })
    .await?;
    Ok(Json(r))
}

//! Typed rows and the statements that read and write them. Every value a request supplies
//! reaches SQLite as a bound parameter, never as SQL text.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// An enum stored as TEXT under the names its serde form uses.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                match v.as_str()? {
                    $($text => Ok(Self::$variant),)+
                    other => Err(rusqlite::types::FromSqlError::Other(
                        format!("unknown {} '{other}'", stringify!($name)).into(),
                    )),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// The file type of an uploaded study.
    ImageFormat { Png => "png", Jpeg => "jpeg", Dicom => "dicom" }
);
text_enum!(
    JobState { Queued => "queued", Running => "running", Done => "done", Failed => "failed" }
);
text_enum!(
    /// Where a drafted sentence stands: `pending` is AI text no person has acted on.
    SentenceStatus { Pending => "pending", Accepted => "accepted", Rejected => "rejected", Edited => "edited" }
);
text_enum!(
    EditAction { Accept => "accept", Reject => "reject", Edit => "edit", Reset => "reset" }
);
text_enum!(
    /// What an analysis image holds: label maps (mean, samples) and rendered overlays.
    ImageKind {
        MeanMask => "mean_mask",
        SampleMask => "sample_mask",
        Structures => "structures",
        Uncertainty => "uncertainty",
        Outline => "outline",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub id: i64,
    /// The hospital's patient identifier (DICOM PatientID or as uploaded).
    pub patient_key: String,
    pub studies: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub id: i64,
    pub patient_id: i64,
    pub patient_key: String,
    /// ISO date `YYYY-MM-DD` when known.
    pub study_date: Option<String>,
    /// View position (PA, AP, LL, ...) when known.
    pub view: Option<String>,
    pub format: ImageFormat,
    /// The uploaded file's name, for display only (files are stored under server-chosen names).
    pub file_name: String,
    pub width: i64,
    pub height: i64,
    pub spacing_mm: Option<f64>,
    pub created_at: String,
}

/// A study to insert, with its display pixels (u16 little endian, row-major).
pub struct NewStudy {
    pub patient_key: String,
    pub study_date: Option<String>,
    pub view: Option<String>,
    pub format: ImageFormat,
    pub file_name: String,
    pub stored_name: String,
    pub width: usize,
    pub height: usize,
    pub spacing_mm: Option<f64>,
    pub pixels: Vec<u8>,
    /// `<dataset>:<file>` for an imported study (unique), `None` for an upload.
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub study_id: i64,
    pub model_version: String,
    pub state: JobState,
    /// What the job is doing now, in words.
    pub stage: String,
    /// 0 to 1.
    pub progress: f64,
    pub error: Option<String>,
    pub updated_at: String,
}

/// A stored analysis: typed JSON columns are parsed by the caller's types.
pub struct AnalysisRow {
    pub id: i64,
    pub study_id: i64,
    pub model_version: String,
    pub measurements: String,
    pub draft: String,
    pub ctr_lines: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceRow {
    pub id: i64,
    pub position: i64,
    pub section: String,
    pub ai_text: String,
    pub text: String,
    pub status: SentenceStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceEdit {
    pub id: i64,
    pub sentence_id: i64,
    pub action: EditAction,
    pub text: String,
    pub author: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    pub id: i64,
    pub analysis_id: i64,
    pub author: String,
    pub findings: String,
    pub impression: String,
    pub signed_at: String,
    /// 1 for the first signature of this analysis' report, 2+ for amendments.
    pub version: i64,
}

pub fn patients(c: &Connection) -> rusqlite::Result<Vec<Patient>> {
    let mut st = c.prepare_cached(
        "SELECT p.id, p.patient_key, COUNT(s.id) FROM patients p LEFT JOIN studies s ON s.patient_id = p.id
         GROUP BY p.id ORDER BY p.patient_key",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Patient {
            id: r.get(0)?,
            patient_key: r.get(1)?,
            studies: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub fn patient(c: &Connection, id: i64) -> rusqlite::Result<Option<Patient>> {
    c.prepare_cached(
        "SELECT p.id, p.patient_key, (SELECT COUNT(*) FROM studies s WHERE s.patient_id = p.id) FROM patients p WHERE p.id = ?1")?
        .query_row([id],
        |r| {
            Ok(Patient {
                id: r.get(0)?,
                patient_key: r.get(1)?,
                studies: r.get(2)?,
            })
        },
    )
    .optional()
}

const STUDY_COLUMNS: &str = "s.id, s.patient_id, p.patient_key, s.study_date, s.view, s.format, s.file_name, s.width, s.height, s.spacing_mm, s.created_at";

fn study_row(r: &Row) -> rusqlite::Result<Study> {
    Ok(Study {
        id: r.get(0)?,
        patient_id: r.get(1)?,
        patient_key: r.get(2)?,
        study_date: r.get(3)?,
        view: r.get(4)?,
        format: r.get(5)?,
        file_name: r.get(6)?,
        width: r.get(7)?,
        height: r.get(8)?,
        spacing_mm: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// Insert a study (and its patient when new) in one transaction; returns the study id.
pub fn insert_study(c: &mut Connection, s: &NewStudy) -> rusqlite::Result<i64> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO patients (patient_key) VALUES (?1) ON CONFLICT (patient_key) DO NOTHING",
        [&s.patient_key],
    )?;
    let patient: i64 = tx
        .prepare_cached("SELECT id FROM patients WHERE patient_key = ?1")?
        .query_row([&s.patient_key], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO studies (patient_id, study_date, view, format, file_name, stored_name, width, height, spacing_mm, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            patient,
            s.study_date,
            s.view,
            s.format,
            s.file_name,
            s.stored_name,
            s.width as i64,
            s.height as i64,
            s.spacing_mm,
            s.source
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO study_pixels (study_id, pixels) VALUES (?1, ?2)",
        params![id, s.pixels],
    )?;
    tx.commit()?;
    Ok(id)
}

pub fn studies(c: &Connection, patient: Option<i64>) -> rusqlite::Result<Vec<Study>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {STUDY_COLUMNS} FROM studies s JOIN patients p ON p.id = s.patient_id
         WHERE ?1 IS NULL OR s.patient_id = ?1
         ORDER BY p.patient_key, s.study_date IS NULL, s.study_date, s.id"
    ))?;
    let rows = st.query_map([patient], study_row)?;
    rows.collect()
}

pub fn study(c: &Connection, id: i64) -> rusqlite::Result<Option<Study>> {
    c.prepare_cached(
        &format!(
            "SELECT {STUDY_COLUMNS} FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.id = ?1"
        ))?
        .query_row([id],
        study_row,
    )
    .optional()
}

/// The study imported from `source`, if any.
pub fn study_by_source(c: &Connection, source: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM studies WHERE source = ?1")?
        .query_row([source], |r| r.get(0))
        .optional()
}

/// The server-chosen file name of a study's upload.
pub fn stored_name(c: &Connection, study: i64) -> rusqlite::Result<String> {
    c.prepare_cached("SELECT stored_name FROM studies WHERE id = ?1")?
        .query_row([study], |r| r.get(0))
}

pub fn study_pixels(c: &Connection, study: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT pixels FROM study_pixels WHERE study_id = ?1")?
        .query_row([study], |r| r.get(0))
        .optional()
}

const JOB_COLUMNS: &str = "id, study_id, model_version, state, stage, progress, error, updated_at";

fn job_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        study_id: r.get(1)?,
        model_version: r.get(2)?,
        state: r.get(3)?,
        stage: r.get(4)?,
        progress: r.get(5)?,
        error: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub fn insert_job(c: &Connection, study: i64, model_version: &str) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO jobs (study_id, model_version, state, stage, progress) VALUES (?1, ?2, 'queued', 'queued', 0)",
        params![study, model_version],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn job(c: &Connection, id: i64) -> rusqlite::Result<Option<Job>> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_row)
        .optional()
}

/// The study's most recent job.
pub fn latest_job(c: &Connection, study: i64) -> rusqlite::Result<Option<Job>> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE study_id = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([study], job_row)
    .optional()
}

/// Jobs a stopped server left queued or running, oldest first (to run again).
pub fn unfinished_jobs(c: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut st =
        c.prepare_cached("SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY id")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

pub fn update_job(
    c: &Connection,
    id: i64,
    state: JobState,
    stage: &str,
    progress: f64,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE jobs SET state = ?2, stage = ?3, progress = ?4, error = ?5,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        params![id, state, stage, progress.clamp(0.0, 1.0), error],
    )?;
    Ok(())
}

const ANALYSIS_COLUMNS: &str =
    "id, study_id, model_version, measurements, draft, ctr_lines, created_at";

fn analysis_row(r: &Row) -> rusqlite::Result<AnalysisRow> {
    Ok(AnalysisRow {
        id: r.get(0)?,
        study_id: r.get(1)?,
        model_version: r.get(2)?,
        measurements: r.get(3)?,
        draft: r.get(4)?,
        ctr_lines: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// The study's analysis by `model_version`.
pub fn analysis(
    c: &Connection,
    study: i64,
    model_version: &str,
) -> rusqlite::Result<Option<AnalysisRow>> {
    c.prepare_cached(&format!(
        "SELECT {ANALYSIS_COLUMNS} FROM analyses WHERE study_id = ?1 AND model_version = ?2"
    ))?
    .query_row(params![study, model_version], analysis_row)
    .optional()
}

/// An analysis with its images and drafted sentences, written in one transaction.
pub struct NewAnalysis<'a> {
    pub study_id: i64,
    pub model_version: &'a str,
    pub measurements: String,
    pub draft: String,
    pub ctr_lines: Option<String>,
    pub images: Vec<(ImageKind, i64, Vec<u8>)>,
    /// (section, text) in draft order.
    pub sentences: Vec<(String, String)>,
}

/// Store `a` (replacing an earlier analysis of the same study and model version) and
/// mark `job` done, atomically.
pub fn insert_analysis(c: &mut Connection, a: &NewAnalysis, job: i64) -> rusqlite::Result<i64> {
    let tx = c.transaction()?;
    tx.execute(
        "DELETE FROM analyses WHERE study_id = ?1 AND model_version = ?2",
        params![a.study_id, a.model_version],
    )?;
    tx.execute(
        "INSERT INTO analyses (study_id, model_version, measurements, draft, ctr_lines) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![a.study_id, a.model_version, a.measurements, a.draft, a.ctr_lines],
    )?;
    let id = tx.last_insert_rowid();
    {
        let mut img = tx.prepare_cached(
            "INSERT INTO analysis_images (analysis_id, kind, idx, png) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (kind, idx, png) in &a.images {
            img.execute(params![id, kind, idx, png])?;
        }
        let mut sen = tx.prepare_cached(
            "INSERT INTO report_sentences (analysis_id, position, section, ai_text, text, status)
             VALUES (?1, ?2, ?3, ?4, ?4, 'pending')",
        )?;
        for (i, (section, text)) in a.sentences.iter().enumerate() {
            sen.execute(params![id, i as i64, section, text])?;
        }
    }
    tx.execute(
        "UPDATE jobs SET state = 'done', stage = 'done', progress = 1, error = NULL,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        [job],
    )?;
    tx.commit()?;
    Ok(id)
}

pub fn analysis_image(
    c: &Connection,
    analysis: i64,
    kind: ImageKind,
    idx: i64,
) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached(
        "SELECT png FROM analysis_images WHERE analysis_id = ?1 AND kind = ?2 AND idx = ?3",
    )?
    .query_row(params![analysis, kind, idx], |r| r.get(0))
    .optional()
}

/// All images of one kind, by index.
pub fn analysis_images(
    c: &Connection,
    analysis: i64,
    kind: ImageKind,
) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut st = c.prepare_cached(
        "SELECT png FROM analysis_images WHERE analysis_id = ?1 AND kind = ?2 ORDER BY idx",
    )?;
    let rows = st.query_map(params![analysis, kind], |r| r.get(0))?;
    rows.collect()
}

pub fn count_images(c: &Connection, analysis: i64, kind: ImageKind) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COUNT(*) FROM analysis_images WHERE analysis_id = ?1 AND kind = ?2")?
        .query_row(params![analysis, kind], |r| r.get(0))
}

fn sentence_row(r: &Row) -> rusqlite::Result<SentenceRow> {
    Ok(SentenceRow {
        id: r.get(0)?,
        position: r.get(1)?,
        section: r.get(2)?,
        ai_text: r.get(3)?,
        text: r.get(4)?,
        status: r.get(5)?,
    })
}

pub fn sentences(c: &Connection, analysis: i64) -> rusqlite::Result<Vec<SentenceRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, position, section, ai_text, text, status FROM report_sentences
         WHERE analysis_id = ?1 ORDER BY position",
    )?;
    let rows = st.query_map([analysis], sentence_row)?;
    rows.collect()
}

/// Apply one person's action to a sentence of `analysis` and record it in the history,
/// in one transaction; `None` when the sentence is not part of that analysis.
pub fn edit_sentence(
    c: &mut Connection,
    analysis: i64,
    sentence: i64,
    action: EditAction,
    text: Option<&str>,
    author: &str,
) -> rusqlite::Result<Option<SentenceRow>> {
    let tx = c.transaction()?;
    let Some(row) = tx
        .prepare_cached(
            "SELECT id, position, section, ai_text, text, status FROM report_sentences
             WHERE id = ?1 AND analysis_id = ?2",
        )?
        .query_row(params![sentence, analysis], sentence_row)
        .optional()?
    else {
        return Ok(None);
    };
    let (status, new_text) = match action {
        EditAction::Accept if row.text == row.ai_text => (SentenceStatus::Accepted, row.text),
        EditAction::Accept => (SentenceStatus::Edited, row.text),
        EditAction::Reject => (SentenceStatus::Rejected, row.text),
        EditAction::Edit => (
            SentenceStatus::Edited,
            text.unwrap_or(&row.text).to_string(),
        ),
        EditAction::Reset => (SentenceStatus::Pending, row.ai_text.clone()),
    };
    tx.execute(
        "UPDATE report_sentences SET status = ?2, text = ?3 WHERE id = ?1",
        params![sentence, status, new_text],
    )?;
    tx.execute(
        "INSERT INTO sentence_edits (sentence_id, action, text, author) VALUES (?1, ?2, ?3, ?4)",
        params![sentence, action, new_text, author],
    )?;
    let row = tx.prepare_cached(
        "SELECT id, position, section, ai_text, text, status FROM report_sentences WHERE id = ?1")?
        .query_row([sentence],
        sentence_row,
    )?;
    tx.commit()?;
    Ok(Some(row))
}

/// Every action on the sentences of `analysis`, oldest first.
pub fn sentence_edits(c: &Connection, analysis: i64) -> rusqlite::Result<Vec<SentenceEdit>> {
    let mut st = c.prepare_cached(
        "SELECT e.id, e.sentence_id, e.action, e.text, e.author, e.at FROM sentence_edits e
         JOIN report_sentences s ON s.id = e.sentence_id WHERE s.analysis_id = ?1 ORDER BY e.id",
    )?;
    let rows = st.query_map([analysis], |r| {
        Ok(SentenceEdit {
            id: r.get(0)?,
            sentence_id: r.get(1)?,
            action: r.get(2)?,
            text: r.get(3)?,
            author: r.get(4)?,
            at: r.get(5)?,
        })
    })?;
    rows.collect()
}

pub fn insert_signed(
    c: &Connection,
    analysis: i64,
    author: &str,
    findings: &str,
    impression: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO signed_reports (analysis_id, author, findings, impression) VALUES (?1, ?2, ?3, ?4)",
        params![analysis, author, findings, impression],
    )?;
    Ok(())
}

/// The latest signature of the analysis' report.
pub fn latest_signed(c: &Connection, analysis: i64) -> rusqlite::Result<Option<SignedReport>> {
    c.prepare_cached(
        "SELECT id, analysis_id, author, findings, impression, signed_at,
                (SELECT COUNT(*) FROM signed_reports t WHERE t.analysis_id = r.analysis_id AND t.id <= r.id)
         FROM signed_reports r WHERE analysis_id = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([analysis],
        |r| {
            Ok(SignedReport {
                id: r.get(0)?,
                analysis_id: r.get(1)?,
                author: r.get(2)?,
                findings: r.get(3)?,
                impression: r.get(4)?,
                signed_at: r.get(5)?,
                version: r.get(6)?,
            })
        },
    )
    .optional()
}

pub fn insert_review(
    c: &Connection,
    analysis: i64,
    text: &str,
    result: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO reviews (analysis_id, text, result) VALUES (?1, ?2, ?3)",
        params![analysis, text, result],
    )?;
    Ok(())
}

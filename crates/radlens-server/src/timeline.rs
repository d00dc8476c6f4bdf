//! A patient's studies in date order with their measurements and signed reports, and
//! what changed between consecutive analysed studies (the engine's `draft::changes`,
//! each with its interval), for the timeline page.

use crate::db::records::{self, Job, Patient, SignedReport, Study};
use crate::error::{Result, ServerError};
use crate::results::rebuild;
use crate::AppState;
use radlens_report::draft::{changes, Change};
use radlens_report::measure::Measurements;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineStudy {
    pub study: Study,
    pub job: Option<Job>,
    /// `None` until the study is analysed with the running model.
    pub measurements: Option<Measurements>,
    pub signed: Option<SignedReport>,
}

/// Changes from one analysed study to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineInterval {
    pub from_study: i64,
    pub to_study: i64,
    /// Days between the study dates, when both are known.
    pub days: Option<i64>,
    pub changes: Vec<Change>,
}

/// `GET /api/patients/{id}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientHistory {
    pub patient: Patient,
    pub model_version: String,
    pub ai_generated: bool,
    /// Oldest first; studies without a date last.
    pub studies: Vec<TimelineStudy>,
    pub intervals: Vec<TimelineInterval>,
}

/// Days since 1970-01-01 of an ISO date (Howard Hinnant's days_from_civil).
fn day_number(iso: &str) -> Option<i64> {
    let mut it = iso.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Blocking: rebuilds each analysed study (reads its file).
pub fn history(state: &AppState, patient: i64) -> Result<PatientHistory> {
    let (p, rows) = {
        let c = state.db.read();
        let p = records::patient(&c, patient)?
            .ok_or_else(|| ServerError::NotFound(format!("no patient {patient}")))?;
        let mut rows = Vec::new();
        for s in records::studies(&c, Some(patient))? {
            let a = records::analysis(&c, s.id, &state.engine.version)?;
            let signed = a
                .as_ref()
                .map(|a| records::latest_signed(&c, a.id))
                .transpose()?
                .flatten();
            let job = records::latest_job(&c, s.id)?;
            rows.push((s, job, a, signed));
        }
        (p, rows)
    };
    let mut studies = Vec::new();
    let mut analysed = Vec::new();
    for (study, job, a, signed) in rows {
        let measurements = a
            .as_ref()
            .map(|a| serde_json::from_str(&a.measurements))
            .transpose()?;
        if let Some(a) = &a {
            analysed.push((study.id, study.study_date.clone(), rebuild(state, a)?));
        }
        studies.push(TimelineStudy {
            study,
            job,
            measurements,
            signed,
        });
    }
    let intervals = analysed
        .windows(2)
        .map(|w| {
            let ((from, fd, prior), (to, td, current)) = (&w[0], &w[1]);
            TimelineInterval {
                from_study: *from,
                to_study: *to,
                days: fd
                    .as_deref()
                    .and_then(day_number)
                    .zip(td.as_deref().and_then(day_number))
                    .map(|(a, b)| b - a),
                changes: changes(prior, current),
            }
        })
        .collect();
    Ok(PatientHistory {
        patient: p,
        model_version: state.engine.version.clone(),
        ai_generated: true,
        studies,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn day_numbers_by_hand() {
        use super::day_number;
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(
            day_number("2000-03-01").unwrap() - day_number("2000-02-28").unwrap(),
            2
        );
        assert_eq!(
            day_number("2021-03-01").unwrap() - day_number("2021-02-28").unwrap(),
            1
        );
        assert_eq!(day_number("2020-01-01"), Some(18_262));
        assert_eq!(day_number("x"), None);
    }
}

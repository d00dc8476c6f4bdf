//! Importing a public dataset into the workbench (`radlens import covid-cxr:DIR`, `jsrt:`):
//! each film becomes a study of its patient, with the date and view from the dataset's
//! tables, through the same signature and decode checks as an upload. A study remembers
//! its source (`<dataset>:<file>`), so importing again adds only what is new. Analyses
//! are not run here: a study is analysed when it is opened (or `POST .../analyse`).

use crate::db::records::{self, NewStudy};
use crate::db::Db;
use crate::upload::{self, Upload};
use radlens_core::Observer;
use radlens_io::attributes as attr;
use radlens_io::dataset::{DatasetKind, DatasetSpec, Sample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Progress of an import, one event per film.
#[derive(Debug, Clone, PartialEq)]
pub struct FilmDone {
    pub done: usize,
    pub total: usize,
    pub file: String,
    /// False when an earlier import already brought it in.
    pub imported: bool,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub dataset: String,
    /// Films the dataset lists.
    pub films: usize,
    pub imported: usize,
    pub already_there: usize,
    /// Distinct patients of the dataset's films.
    pub patients: usize,
}

/// The dataset's name in patient keys and sources; only sets with patients import.
fn source_name(kind: DatasetKind) -> Result<&'static str, String> {
    match kind {
        DatasetKind::Jsrt | DatasetKind::JsrtClavicles => Ok("jsrt"),
        DatasetKind::CovidCxr | DatasetKind::CovidCxrOpacity => Ok("covid-cxr"),
        DatasetKind::Nnunet => Err(
            "import takes jsrt:<dir> or covid-cxr:<dir> (an nnU-Net folder records no patients)"
                .into(),
        ),
    }
}

/// The patient a film belongs to: covid-cxr's `patientid` (several films per patient),
/// or the film itself (JSRT has one film per patient).
fn patient_key(name: &str, s: &Sample) -> String {
    match s.attributes.category(attr::PATIENT_ID) {
        Some(p) => format!("{name}-{p}"),
        None => format!("{name}-{}", s.id),
    }
}

/// covid-cxr's dates as ISO: `January 22, 2020`, `Jan 28, 2020`, `3/3/2020`, `03/16/20`
/// (US order). A bare year is not a date and gives `None`.
pub fn metadata_date(raw: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let s = raw.trim();
    let (y, m, d): (u32, u32, u32) = if let Some((md, y)) = s.split_once(',') {
        let (month, day) = md.trim().split_once(' ')?;
        let month = month.to_ascii_lowercase();
        let m = MONTHS.iter().position(|p| month.starts_with(p))? as u32 + 1;
        (y.trim().parse().ok()?, m, day.trim().parse().ok()?)
    } else {
        let parts: Vec<&str> = s.split('/').collect();
        let [m, d, y] = parts[..] else { return None };
        let y: u32 = y.parse().ok()?;
        let y = if y < 100 { 2000 + y } else { y };
        (y, m.parse().ok()?, d.parse().ok()?)
    };
    upload::iso_date(&format!("{y:04}-{m:02}-{d:02}"), "date").ok()
}

/// Import every film of `spec` into `db`, storing files under `studies_dir`.
pub fn import(
    db: &Db,
    studies_dir: &Path,
    spec: &DatasetSpec,
    observer: &dyn Observer<FilmDone>,
) -> Result<ImportSummary, String> {
    let name = source_name(spec.kind)?;
    std::fs::create_dir_all(studies_dir).map_err(|e| format!("{}: {e}", studies_dir.display()))?;
    let dataset = spec.open().map_err(|e| e.to_string())?;
    let total = dataset.samples.len();
    let (mut imported, mut already_there) = (0, 0);
    let mut patients = BTreeSet::new();
    for (i, s) in dataset.samples.iter().enumerate() {
        let source = format!("{name}:{}", s.id);
        let patient = patient_key(name, s);
        patients.insert(patient.clone());
        let known = records::study_by_source(&db.lock(), &source)
            .map_err(|e| format!("database: {e}"))?
            .is_some();
        if !known {
            let new = film(studies_dir, s, patient, source)?;
            records::insert_study(&mut db.lock(), &new).map_err(|e| format!("database: {e}"))?;
            imported += 1;
        } else {
            already_there += 1;
        }
        observer.observe(&FilmDone {
            done: i + 1,
            total,
            file: s.id.clone(),
            imported: !known,
        });
    }
    Ok(ImportSummary {
        dataset: spec.to_string(),
        films: total,
        imported,
        already_there,
        patients: patients.len(),
    })
}

/// One film as a study: read and checked like an upload, with the dataset's spacing
/// where the file records none.
fn film(
    studies_dir: &Path,
    s: &Sample,
    patient: String,
    source: String,
) -> Result<NewStudy, String> {
    let path = s.image_path.display();
    let bytes = std::fs::read(&s.image_path).map_err(|e| format!("{path}: {e}"))?;
    let up = Upload {
        file_name: s.id.clone(),
        bytes,
        patient_id: Some(patient),
        study_date: s.attributes.category(attr::DATE).and_then(metadata_date),
        view: s.attributes.category(attr::VIEW).map(str::to_string),
    };
    let mut new = upload::ingest(studies_dir, up).map_err(|e| format!("{path}: {e}"))?;
    new.spacing_mm = new.spacing_mm.or(s.spacing.as_ref().map(|p| p.row_mm));
    new.source = Some(source);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::metadata_date;

    #[test]
    fn covid_cxr_dates_in_every_form_the_table_uses() {
        for (raw, iso) in [
            ("January 22, 2020", Some("2020-01-22")),
            ("Jan 28, 2020", Some("2020-01-28")),
            ("February 26, 2019", Some("2019-02-26")),
            ("3/3/2020", Some("2020-03-03")),
            ("2/29/2020", Some("2020-02-29")),
            ("03/16/20", Some("2020-03-16")),
            ("2017", None),
            ("2/30/2020", None),
            ("Smarch 3, 2020", None),
            ("", None),
        ] {
            assert_eq!(metadata_date(raw).as_deref(), iso, "{raw}");
        }
    }
}

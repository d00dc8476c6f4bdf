//! Turning an uploaded file into a study: the type from the file's first bytes (not its
//! name or the client's content type), a full decode before anything is kept, DICOM tags
//! for patient, date and view, and the file stored under a name the server chooses.

use crate::db::records::{ImageFormat, NewStudy};
use crate::engine::{fnv1a, FNV_OFFSET};
use crate::error::{Result, ServerError};
use radlens_io::dicom::DicomFile;
use std::io::Write;
use std::path::Path;

/// The largest image side accepted (a chest film is about 3000 pixels).
pub const MAX_SIDE: usize = 8192;

/// One multipart upload as received.
#[derive(Debug, Default)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub patient_id: Option<String>,
    pub study_date: Option<String>,
    pub view: Option<String>,
}

/// The image type from the file's signature.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(ImageFormat::Dicom)
    } else {
        None
    }
}

/// A patient identifier: 1 to 64 characters (DICOM's LO), no control characters.
pub fn patient_key(raw: &str, what: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(ServerError::BadRequest(format!(
            "{what} '{}' must be 1 to 64 characters without control characters",
            s.escape_debug()
        )));
    }
    Ok(s.to_string())
}

/// An ISO date `YYYY-MM-DD` from ISO or DICOM `YYYYMMDD` form, checked for a real day.
pub fn iso_date(raw: &str, what: &str) -> Result<String> {
    let s = raw.trim();
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    let ok_shape = (s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-')
        || (s.len() == 8 && s == digits);
    let bad = || {
        ServerError::BadRequest(format!(
            "{what} '{}' is not a date (YYYY-MM-DD or YYYYMMDD)",
            s.escape_debug()
        ))
    };
    if !ok_shape || digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (y, m, d): (u32, u32, u32) = (
        digits[0..4].parse().map_err(|_| bad())?,
        digits[4..6].parse().map_err(|_| bad())?,
        digits[6..8].parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if !(1..=days).contains(&d) || y < 1800 {
        return Err(bad());
    }
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// A view position: up to 16 letters (PA, AP, LL, LATERAL, ...), upper-cased.
pub fn view(raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ServerError::BadRequest(format!(
            "view '{}' must be 1 to 16 letters (PA, AP, LL, ...)",
            s.escape_debug()
        )));
    }
    Ok(s.to_ascii_uppercase())
}

/// The file's display name: its last path component, printable, at most 200 characters.
fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// A form field wins when the file has no value; a conflicting pair is refused.
fn merge(file: Option<String>, form: Option<String>, what: &str) -> Result<Option<String>> {
    match (file, form) {
        (Some(f), Some(g)) if f != g => Err(ServerError::Unprocessable(format!(
            "the form's {what} '{g}' differs from the DICOM file's '{f}'"
        ))),
        (f, g) => Ok(f.or(g)),
    }
}

/// Decode and check `up`, store its file under `studies_dir`, and return the study to
/// insert. Blocking (decodes the whole image).
pub fn ingest(studies_dir: &Path, up: Upload) -> Result<NewStudy> {
    let file_name = display_name(&up.file_name);
    let format = sniff(&up.bytes).ok_or_else(|| {
        ServerError::UnsupportedType(format!(
            "{file_name}: not a PNG, JPEG or DICOM file (by its first bytes)"
        ))
    })?;
    // decode from a temporary file in the destination folder; keep nothing on failure
    let mut tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(studies_dir)
        .map_err(|e| ServerError::Internal(format!("{}: {e}", studies_dir.display())))?;
    tmp.write_all(&up.bytes)
        .and_then(|_| tmp.flush())
        .map_err(|e| ServerError::Internal(format!("{}: {e}", studies_dir.display())))?;
    let unreadable = |e: &dyn std::fmt::Display| {
        // the library names the temporary path; the user knows the upload's name
        let msg = e.to_string().replace(&tmp.path().display().to_string(), "");
        ServerError::Unprocessable(format!(
            "{file_name}: cannot read the {}: {}",
            format.as_str(),
            msg.trim_start_matches([':', ' '])
        ))
    };
    let image = radlens_io::read_image(tmp.path()).map_err(|e| unreadable(&e))?;
    if image.width > MAX_SIDE || image.height > MAX_SIDE || image.width < 16 || image.height < 16 {
        return Err(ServerError::Unprocessable(format!(
            "{file_name}: {}x{} pixels; radlens takes images from 16 to {MAX_SIDE} pixels a side",
            image.width, image.height
        )));
    }
    let tags = match format {
        ImageFormat::Dicom => Some(
            DicomFile::open(tmp.path())
                .map_err(|e| unreadable(&e))?
                .info(),
        ),
        _ => None,
    };
    let form_patient = up
        .patient_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| patient_key(s, "patient id"))
        .transpose()?;
    let form_date = up
        .study_date
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| iso_date(s, "study date"))
        .transpose()?;
    let form_view = up
        .view
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(view)
        .transpose()?;
    let (file_patient, file_date, file_view) = match &tags {
        Some(t) => (
            t.patient_id
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| patient_key(s, "DICOM PatientID"))
                .transpose()?,
            t.study_date
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| iso_date(s, "DICOM StudyDate"))
                .transpose()?,
            t.view_position
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(view)
                .transpose()?,
        ),
        None => (None, None, None),
    };
    let patient = merge(file_patient, form_patient, "patient id")?.ok_or_else(|| {
        ServerError::BadRequest(format!(
            "{file_name}: a patient id is required (the form's patient_id field, or PatientID in a DICOM file)"
        ))
    })?;
    let study_date = merge(file_date, form_date, "study date")?;
    let view = merge(file_view, form_view, "view")?;

    let ext = match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Dicom => "dcm",
    };
    let stored_name = format!(
        "{:016x}-{}.{ext}",
        fnv1a(&up.bytes, FNV_OFFSET),
        up.bytes.len()
    );
    let dest = studies_dir.join(&stored_name);
    if !dest.exists() {
        radlens_core::atomic::write_atomic(&dest, &up.bytes)?;
    }
    let pixels = image
        .pixels
        .iter()
        .flat_map(|v| ((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes())
        .collect();
    Ok(NewStudy {
        patient_key: patient,
        study_date,
        view,
        format,
        file_name,
        stored_name,
        width: image.width,
        height: image.height,
        spacing_mm: image.spacing.map(|s| s.row_mm),
        pixels,
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_normalised() {
        assert_eq!(iso_date("20200229", "d").unwrap(), "2020-02-29");
        assert_eq!(iso_date("2021-12-31", "d").unwrap(), "2021-12-31");
        for bad in [
            "20210229",
            "2021-13-01",
            "2021-1-01",
            "x; DROP TABLE",
            "",
            "2021/01/01",
        ] {
            assert!(iso_date(bad, "d").is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_ids_are_cleaned() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\x\\film.dcm"), "film.dcm");
        assert!(patient_key("a\u{0}b", "p").is_err());
        assert!(patient_key(&"x".repeat(65), "p").is_err());
        assert_eq!(patient_key(" P-1 ", "p").unwrap(), "P-1");
        assert_eq!(view("pa").unwrap(), "PA");
        assert!(view("P A").is_err());
    }

    #[test]
    fn sniffing_reads_signatures_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        let mut d = vec![0u8; 132];
        d[128..].copy_from_slice(b"DICM");
        assert_eq!(sniff(&d), Some(ImageFormat::Dicom));
        assert_eq!(sniff(b"GIF89a"), None);
    }
}

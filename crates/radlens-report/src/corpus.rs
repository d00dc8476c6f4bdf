//! Report corpora: the Indiana University chest X-ray collection, named on the command
//! line as `iu-xray:<dir>` and read from its `indiana_reports.csv`.

use crate::error::{ReportError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One report: its id and the free-text sections radlens uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub uid: String,
    pub findings: String,
    pub impression: String,
}

impl Report {
    /// Findings then impression, separated by a space; empty sections are skipped.
    pub fn text(&self) -> String {
        [self.findings.trim(), self.impression.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A report corpus named on the command line as `iu-xray:<dir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusSpec {
    pub dir: PathBuf,
}

impl std::str::FromStr for CorpusSpec {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("iu-xray", dir)) if !dir.is_empty() => Ok(Self {
                dir: PathBuf::from(dir),
            }),
            _ => Err(ReportError::UnknownCorpus(s.to_string())),
        }
    }
}

impl std::fmt::Display for CorpusSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "iu-xray:{}", self.dir.display())
    }
}

impl CorpusSpec {
    /// Reads every report with a non-empty findings or impression section, in file order.
    pub fn read(&self) -> Result<Vec<Report>> {
        read_iu_xray(&self.dir)
    }
}

/// One IU X-ray record: all its text sections and its curated MeSH terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IuRecord {
    pub uid: String,
    pub indication: String,
    pub comparison: String,
    pub findings: String,
    pub impression: String,
    /// `MeSH` split at `;`, each term as written (`Cardiomegaly/mild`).
    pub mesh: Vec<String>,
}

impl IuRecord {
    /// The report as one text with headings (`INDICATION: ...`), empty sections left
    /// out: the form the labeller reads and its offsets refer to.
    pub fn document(&self) -> String {
        use crate::text::Section;
        [
            (Section::Indication, &self.indication),
            (Section::Comparison, &self.comparison),
            (Section::Findings, &self.findings),
            (Section::Impression, &self.impression),
        ]
        .into_iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(s, t)| format!("{}: {}", s.heading(), t.trim()))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The findings and impression part.
    pub fn report(&self) -> Report {
        Report {
            uid: self.uid.clone(),
            findings: self.findings.clone(),
            impression: self.impression.clone(),
        }
    }
}

/// Reads `indiana_reports.csv` in `dir`, keeping reports with some findings/impression text.
pub fn read_iu_xray(dir: &Path) -> Result<Vec<Report>> {
    Ok(read_iu_records(dir)?.iter().map(IuRecord::report).collect())
}

/// Reads every record of `indiana_reports.csv` in `dir` that has findings or impression
/// text, with its other sections and MeSH terms (columns other than uid, findings and
/// impression may be absent: they are then empty).
pub fn read_iu_records(dir: &Path) -> Result<Vec<IuRecord>> {
    let (mut rdr, columns) = open_iu_csv(dir)?;
    let path = columns.path.clone();
    let bad = |e: csv::Error| ReportError::corpus(&path, e);
    let find = |name: &str| columns.find(name);
    let (uid, findings, impression) = (
        columns.require("uid")?,
        columns.require("findings")?,
        columns.require("impression")?,
    );
    let (indication, comparison, mesh) = (find("indication"), find("comparison"), find("MeSH"));
    let mut records = Vec::new();
    for row in rdr.records() {
        let row = row.map_err(bad)?;
        let field = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("").trim().to_string();
        let record = IuRecord {
            uid: field(Some(uid)),
            indication: field(indication),
            comparison: field(comparison),
            findings: field(Some(findings)),
            impression: field(Some(impression)),
            mesh: split_terms(&field(mesh)),
        };
        if !record.report().text().is_empty() {
            records.push(record);
        }
    }
    if let Some(r) = records.iter().find(|r| r.uid.is_empty()) {
        return Err(ReportError::corpus(
            &path,
            format!("a report with text '{}' has no uid", r.report().text()),
        ));
    }
    if records.is_empty() {
        return Err(ReportError::corpus(
            &path,
            "no report has findings or impression text",
        ));
    }
    Ok(records)
}

/// The header of `indiana_reports.csv`, to find its columns by name.
pub(crate) struct IuColumns {
    pub(crate) path: PathBuf,
    header: csv::StringRecord,
}

impl IuColumns {
    /// The index of column `name`, if the file has it.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.trim() == name)
    }

    /// The index of column `name`, or an error naming the file and the column.
    pub(crate) fn require(&self, name: &str) -> Result<usize> {
        self.find(name)
            .ok_or_else(|| ReportError::corpus(&self.path, format!("no '{name}' column")))
    }
}

/// Opens `indiana_reports.csv` in `dir` with its header. Rows may have fewer fields than
/// the header; missing fields read as empty.
pub(crate) fn open_iu_csv(dir: &Path) -> Result<(csv::Reader<std::fs::File>, IuColumns)> {
    let path = dir.join("indiana_reports.csv");
    let bad = |e: csv::Error| ReportError::corpus(&path, e);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(bad)?;
    let header = rdr.headers().map_err(bad)?.clone();
    Ok((rdr, IuColumns { path, header }))
}

/// A `;`-separated list of curated terms (`MeSH`, `Problems`), trimmed, empties dropped.
pub(crate) fn split_terms(field: &str) -> Vec<String> {
    field
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_joins_non_empty_sections() {
        let r = Report {
            uid: "1".into(),
            findings: " Clear lungs. ".into(),
            impression: "Normal.".into(),
        };
        assert_eq!(r.text(), "Clear lungs. Normal.");
        let r = Report {
            impression: String::new(),
            ..r
        };
        assert_eq!(r.text(), "Clear lungs.");
    }

    #[test]
    fn specs_name_the_corpus_kind() {
        let spec: CorpusSpec = "iu-xray:/data".parse().unwrap();
        assert_eq!(spec.dir, Path::new("/data"));
        assert_eq!(spec.to_string(), "iu-xray:/data");
        let e = "mimic:/data".parse::<CorpusSpec>().unwrap_err().to_string();
        assert!(e.contains("mimic") && e.contains("iu-xray:<dir>"), "{e}");
        assert!("iu-xray:".parse::<CorpusSpec>().is_err());
    }

    fn read_csv_text(text: &str) -> Result<Vec<Report>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("indiana_reports.csv"), text).unwrap();
        read_iu_xray(dir.path())
    }

    #[test]
    fn reads_reports_with_text_and_skips_empty_ones() {
        let r = read_csv_text(
            "uid,MeSH,findings,impression\n1,normal,\"Clear, lungs.\",Normal.\n2,normal,,\n3,x\n4,x,,No acute disease.\n",
        )
        .unwrap();
        let uids: Vec<_> = r.iter().map(|r| r.uid.as_str()).collect();
        assert_eq!(uids, ["1", "4"]);
        assert_eq!(r[0].text(), "Clear, lungs. Normal.");
        assert_eq!(r[1].text(), "No acute disease.");
    }

    #[test]
    fn records_keep_sections_and_mesh_terms() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("indiana_reports.csv"),
            "uid,MeSH,indication,comparison,findings,impression\n\
             7,Cardiomegaly/mild;Pleural Effusion/left,Dyspnea,None.,Big heart.,Cardiomegaly.\n",
        )
        .unwrap();
        let r = &read_iu_records(dir.path()).unwrap()[0];
        assert_eq!(r.mesh, ["Cardiomegaly/mild", "Pleural Effusion/left"]);
        assert_eq!(
            r.document(),
            "INDICATION: Dyspnea\nCOMPARISON: None.\nFINDINGS: Big heart.\nIMPRESSION: Cardiomegaly."
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = read_csv_text("uid,findings\n1,x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("indiana_reports.csv") && e.contains("no 'impression' column"),
            "{e}"
        );
        let e = read_csv_text("uid,findings,impression\n,Clear.,\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'Clear.' has no uid"), "{e}");
        let e = read_csv_text("uid,findings,impression\n1,,\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no report has findings"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read_iu_xray(dir.path()).unwrap_err().to_string();
        assert!(e.contains("indiana_reports.csv"), "{e}");
    }
}

//! Radiology report corpora: the Indiana University chest X-ray collection (`iu-xray:<dir>`,
//! `indiana_reports.csv`) and a reproducible report-level held-out split.

use crate::error::{IoError, Result};
use crate::table::{column, read_csv};
use rand::seq::SliceRandom;
use rand::SeedableRng;
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
    type Err = IoError;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("iu-xray", dir)) if !dir.is_empty() => Ok(Self {
                dir: PathBuf::from(dir),
            }),
            _ => Err(IoError::UnknownCorpus(s.to_string())),
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

/// Reads `indiana_reports.csv` in `dir`, keeping reports with some findings/impression text.
pub fn read_iu_xray(dir: &Path) -> Result<Vec<Report>> {
    let path = dir.join("indiana_reports.csv");
    let (h, rows) = read_csv(&path)?;
    let [uid, findings, impression] =
        ["uid", "findings", "impression"].map(|n| column(&h, n, &path));
    let (uid, findings, impression) = (uid?, findings?, impression?);
    let field = |r: &csv::StringRecord, i: usize| r.get(i).unwrap_or("").trim().to_string();
    let reports: Vec<Report> = rows
        .iter()
        .map(|r| Report {
            uid: field(r, uid),
            findings: field(r, findings),
            impression: field(r, impression),
        })
        .filter(|r| !r.text().is_empty())
        .collect();
    if let Some(r) = reports.iter().find(|r| r.uid.is_empty()) {
        return Err(IoError::invalid(
            &path,
            format!("a report with text '{}' has no uid", r.text()),
        ));
    }
    if reports.is_empty() {
        return Err(IoError::invalid(
            &path,
            "no report has findings or impression text",
        ));
    }
    Ok(reports)
}

/// Which reports of a corpus to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportPart {
    Train,
    Heldout,
    All,
}

impl std::str::FromStr for ReportPart {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(Self::Train),
            "heldout" | "held-out" | "test" => Ok(Self::Heldout),
            "all" => Ok(Self::All),
            _ => Err(format!("unknown report part '{s}' (train, heldout or all)")),
        }
    }
}

impl std::fmt::Display for ReportPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Heldout => "heldout",
            Self::All => "all",
        })
    }
}

/// A report-level split: the held-out reports are a seeded random `heldout_fraction` of
/// the corpus (rounded to the nearest report); both parts keep file order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReportSplit {
    pub heldout_fraction: f64,
    pub seed: u64,
}

impl ReportSplit {
    /// The reports of `part`.
    pub fn select(&self, reports: Vec<Report>, part: ReportPart) -> Result<Vec<Report>> {
        if !(0.0..1.0).contains(&self.heldout_fraction) {
            return Err(IoError::InvalidArgument(format!(
                "held-out fraction {} must be in [0, 1)",
                self.heldout_fraction
            )));
        }
        if part == ReportPart::All {
            return Ok(reports);
        }
        let n_heldout = (reports.len() as f64 * self.heldout_fraction).round() as usize;
        let mut order: Vec<usize> = (0..reports.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(self.seed));
        let mut heldout = vec![false; reports.len()];
        for &i in &order[..n_heldout] {
            heldout[i] = true;
        }
        Ok(reports
            .into_iter()
            .zip(heldout)
            .filter(|(_, h)| *h == (part == ReportPart::Heldout))
            .map(|(r, _)| r)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(n: usize) -> Vec<Report> {
        (0..n)
            .map(|i| Report {
                uid: i.to_string(),
                findings: format!("finding {i}"),
                impression: String::new(),
            })
            .collect()
    }

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
    fn split_parts_partition_the_corpus_reproducibly() {
        let split = ReportSplit {
            heldout_fraction: 0.1,
            seed: 7,
        };
        let train = split.select(corpus(95), ReportPart::Train).unwrap();
        let held = split.select(corpus(95), ReportPart::Heldout).unwrap();
        assert_eq!(held.len(), 10); // round(9.5)
        assert_eq!(train.len() + held.len(), 95);
        assert!(held.iter().all(|h| !train.contains(h)));
        assert_eq!(held, split.select(corpus(95), ReportPart::Heldout).unwrap());
        let other = ReportSplit { seed: 8, ..split };
        assert_ne!(held, other.select(corpus(95), ReportPart::Heldout).unwrap());
    }

    #[test]
    fn bad_specs_and_fractions_are_errors() {
        assert!("iu-xray:/data".parse::<CorpusSpec>().is_ok());
        assert!("mimic:/data".parse::<CorpusSpec>().is_err());
        assert!("iu-xray:".parse::<CorpusSpec>().is_err());
        let split = ReportSplit {
            heldout_fraction: 1.5,
            seed: 0,
        };
        assert!(split.select(corpus(3), ReportPart::Train).is_err());
    }
}

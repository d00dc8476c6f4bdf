//! The findings radlens probes language-model features for, decided per report from the
//! IU X-ray corpus' curated tags (the `Problems` column: MeSH headings chosen by the
//! collection's indexers) and, for comparison with earlier studies, from the report's
//! words. A stand-in until radlens has its own report labeler.

use crate::corpus::{open_iu_csv, split_terms, Report};
use crate::error::{ReportError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The curated tags of one report: its `Problems` headings (`;`-separated in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTags {
    pub problems: Vec<String>,
}

/// Reads the `Problems` column of `indiana_reports.csv` in `dir`, by report uid.
pub fn read_iu_xray_tags(dir: &Path) -> Result<HashMap<String, ReportTags>> {
    let (mut rdr, columns) = open_iu_csv(dir)?;
    let (uid, problems) = (columns.require("uid")?, columns.require("Problems")?);
    let mut tags = HashMap::new();
    for row in rdr.records() {
        let row = row.map_err(|e| ReportError::corpus(&columns.path, e))?;
        let problems = split_terms(row.get(problems).unwrap_or(""));
        tags.insert(
            row.get(uid).unwrap_or("").trim().to_string(),
            ReportTags { problems },
        );
    }
    Ok(tags)
}

/// A finding and how a report is decided to have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    /// `Problems` headings any of which marks the finding.
    pub problems: &'static [&'static str],
    /// Lower-case words any of which, as a whole word of the report text, marks it.
    pub words: &'static [&'static str],
}

impl Finding {
    /// Whether `report`, with curated `tags`, has this finding.
    pub fn present(&self, report: &Report, tags: &ReportTags) -> bool {
        if tags
            .problems
            .iter()
            .any(|p| self.problems.contains(&p.as_str()))
        {
            return true;
        }
        if self.words.is_empty() {
            return false;
        }
        let text = report.text().to_lowercase();
        text.split(|c: char| !c.is_alphanumeric())
            .any(|w| self.words.contains(&w))
    }
}

/// The findings of the MAIRA-2 SAE study that the IU X-ray tags can decide.
pub const FINDINGS: [Finding; 12] = [
    Finding {
        name: "normal",
        problems: &["normal"],
        words: &[],
    },
    Finding {
        name: "cardiomegaly",
        problems: &["Cardiomegaly"],
        words: &[],
    },
    Finding {
        name: "pleural effusion",
        problems: &["Pleural Effusion"],
        words: &[],
    },
    Finding {
        name: "atelectasis",
        problems: &["Pulmonary Atelectasis"],
        words: &[],
    },
    Finding {
        name: "opacity",
        problems: &["Opacity", "Airspace Disease", "Infiltrate", "Consolidation"],
        words: &[],
    },
    Finding {
        name: "edema",
        problems: &["Pulmonary Edema", "Pulmonary Congestion", "Edema"],
        words: &[],
    },
    Finding {
        name: "pneumothorax",
        problems: &["Pneumothorax"],
        words: &[],
    },
    Finding {
        name: "emphysema",
        problems: &[
            "Emphysema",
            "Pulmonary Emphysema",
            "Pulmonary Disease, Chronic Obstructive",
        ],
        words: &[],
    },
    Finding {
        name: "granuloma",
        problems: &["Calcified Granuloma", "Granuloma", "Granulomatous Disease"],
        words: &[],
    },
    Finding {
        name: "devices/lines/tubes",
        problems: &[
            "Catheters, Indwelling",
            "Implanted Medical Device",
            "Medical Device",
            "Tube, Inserted",
            "Surgical Instruments",
            "Stents",
        ],
        words: &[],
    },
    Finding {
        name: "fracture",
        problems: &["Fractures, Bone"],
        words: &[],
    },
    Finding {
        name: "comparison/change",
        problems: &[],
        words: &[
            "unchanged",
            "stable",
            "increased",
            "decreased",
            "new",
            "interval",
            "improved",
            "worsened",
            "prior",
            "previous",
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str) -> Report {
        Report {
            uid: "1".into(),
            findings: text.into(),
            impression: String::new(),
        }
    }

    #[test]
    fn findings_come_from_problems_or_whole_words() {
        let tags = ReportTags {
            problems: vec!["Cardiomegaly".into(), "Lung".into()],
        };
        let by_name = |n: &str| FINDINGS.iter().find(|f| f.name == n).unwrap();
        let r = report("Heart size is increased. Renewed stability.");
        assert!(by_name("cardiomegaly").present(&r, &tags));
        assert!(!by_name("normal").present(&r, &tags));
        assert!(by_name("comparison/change").present(&r, &tags));
        // "Renewed" and "stability" are not the words "new" and "stable".
        let r = report("Renewed stability.");
        assert!(!by_name("comparison/change").present(&r, &ReportTags::default()));
    }

    #[test]
    fn tags_are_read_by_uid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("indiana_reports.csv"),
            "uid,MeSH,Problems,findings,impression\n1,x,normal,a,b\n2,y,\"Opacity; Lung\",c,\n",
        )
        .unwrap();
        let tags = read_iu_xray_tags(dir.path()).unwrap();
        assert_eq!(tags["1"].problems, ["normal"]);
        assert_eq!(tags["2"].problems, ["Opacity", "Lung"]);
        std::fs::write(
            dir.path().join("indiana_reports.csv"),
            "uid,findings\n1,a\n",
        )
        .unwrap();
        let e = read_iu_xray_tags(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no 'Problems' column"), "{e}");
    }
}

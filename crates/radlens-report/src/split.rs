//! A reproducible held-out split, so that a sparse autoencoder is trained on reports the
//! held-out evaluation never sees. Many IU X-ray reports are word-for-word copies of others
//! (3,430 reports, 2,774 distinct texts), so the split is by normalised text, not by report,
//! and each part keeps one report per text.

use crate::error::{ReportError, Result};
use crate::Report;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

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

/// A seeded split. With `deduplicate`, reports are grouped by [`normalised_text`], the
/// held-out part is a seeded random `heldout_fraction` of the distinct texts (rounded to the
/// nearest text) and each part keeps only the first report of each text; without it (as
/// stores harvested before the de-duplication record), the fraction is of reports. Both parts
/// keep file order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReportSplit {
    pub heldout_fraction: f64,
    pub seed: u64,
    #[serde(default)]
    pub deduplicate: bool,
}

/// The text a duplicate check compares: lower case, runs of white space as one space,
/// trimmed.
pub fn normalised_text(report: &Report) -> String {
    fold_text(&report.text())
}

/// `text` in lower case with runs of white space as one space, trimmed.
pub fn fold_text(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a split places: a report, or a record holding one. Duplicates are judged on the
/// report's [`normalised_text`], so a record and its report land in the same part.
pub trait SplitItem {
    /// The report's normalised findings and impression text.
    fn split_text(&self) -> String;
}

impl SplitItem for Report {
    fn split_text(&self) -> String {
        normalised_text(self)
    }
}

impl SplitItem for crate::IuRecord {
    fn split_text(&self) -> String {
        normalised_text(&self.report())
    }
}

impl ReportSplit {
    /// The reports (or records) of `part`, in their order.
    pub fn select<T: SplitItem>(&self, reports: Vec<T>, part: ReportPart) -> Result<Vec<T>> {
        if !(0.0..1.0).contains(&self.heldout_fraction) {
            return Err(ReportError::HeldoutFraction(self.heldout_fraction));
        }
        let reports = if self.deduplicate {
            let mut seen = std::collections::HashSet::new();
            reports
                .into_iter()
                .filter(|r| seen.insert(r.split_text()))
                .collect()
        } else {
            reports
        };
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
    use crate::corpus::Report;

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
    fn split_parts_partition_the_corpus_reproducibly() {
        let split = ReportSplit {
            heldout_fraction: 0.1,
            seed: 7,
            deduplicate: false,
        };
        let train = split.select(corpus(95), ReportPart::Train).unwrap();
        let held = split.select(corpus(95), ReportPart::Heldout).unwrap();
        assert_eq!(held.len(), 10); // round(9.5)
        assert_eq!(train.len() + held.len(), 95);
        assert!(held.iter().all(|h| !train.contains(h)));
        assert_eq!(held, split.select(corpus(95), ReportPart::Heldout).unwrap());
        let other = ReportSplit { seed: 8, ..split };
        assert_ne!(held, other.select(corpus(95), ReportPart::Heldout).unwrap());
        assert_eq!(split.select(corpus(95), ReportPart::All).unwrap().len(), 95);
    }

    #[test]
    fn deduplicated_parts_share_no_normalised_text_and_keep_one_copy() {
        // 40 distinct texts, each written three ways (case and spacing differ).
        let reports: Vec<Report> = (0..120)
            .map(|i| {
                let t = i % 40;
                let findings = match i / 40 {
                    0 => format!("Finding {t}."),
                    1 => format!("  finding   {t}. "),
                    _ => format!("FINDING {t}."),
                };
                Report {
                    uid: i.to_string(),
                    findings,
                    impression: String::new(),
                }
            })
            .collect();
        let split = ReportSplit {
            heldout_fraction: 0.25,
            seed: 3,
            deduplicate: true,
        };
        let train = split.select(reports.clone(), ReportPart::Train).unwrap();
        let held = split.select(reports.clone(), ReportPart::Heldout).unwrap();
        assert_eq!((train.len(), held.len()), (30, 10));
        let texts = |rs: &[Report]| -> std::collections::HashSet<String> {
            rs.iter().map(normalised_text).collect()
        };
        assert_eq!(texts(&train).len(), 30);
        assert!(texts(&train).is_disjoint(&texts(&held)));
        // The first copy (uids 0..40) is the one kept.
        assert!(held.iter().all(|r| r.uid.parse::<usize>().unwrap() < 40));
        assert_eq!(split.select(reports, ReportPart::All).unwrap().len(), 40);
    }

    #[test]
    fn fractions_outside_zero_to_one_are_errors() {
        for heldout_fraction in [1.0, 1.5, -0.1, f64::NAN] {
            let split = ReportSplit {
                heldout_fraction,
                seed: 0,
                deduplicate: true,
            };
            let e = split.select(corpus(3), ReportPart::Train).unwrap_err();
            assert!(e.to_string().contains("held-out fraction"), "{e}");
        }
    }

    #[test]
    fn parts_parse_and_print() {
        for (text, part) in [
            ("train", ReportPart::Train),
            ("held-out", ReportPart::Heldout),
            ("all", ReportPart::All),
        ] {
            assert_eq!(text.parse::<ReportPart>().unwrap(), part);
        }
        assert_eq!(ReportPart::Heldout.to_string(), "heldout");
        assert!("dev".parse::<ReportPart>().is_err());
    }
}

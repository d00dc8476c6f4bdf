//! The labeller against the IU X-ray corpus' curated MeSH terms (`rules/mesh_map.txt`
//! says which terms count as which column), with percentile-bootstrap intervals over
//! reports and the plain keyword labeller as baseline.
//!
//! Conventions: a report is a reference positive for a column when one of its MeSH
//! terms maps to it (`No Finding`: the term `normal`). A labeller's positive is a label
//! of 1, and, in the headline convention, also -1 (uncertain counts as positive, since
//! the curators index borderline and possible findings, e.g. `Cardiomegaly/borderline`);
//! the scores with uncertain counted as negative are reported beside it, and a third
//! convention read off the training part: uncertain counts as positive only when a
//! trigger favours the finding (`[favoured uncertainty]` in `mesh_map.txt`).

use super::{Labeler, Labels, Mention, Observation, Status};
use crate::corpus::IuRecord;
use crate::error::{ReportError, Result};
use crate::rules::{load_rules, RuleSection};
use radlens_eval::stats::bootstrap_ci;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MESH_MAP: &str = include_str!("../../rules/mesh_map.txt");

/// The section of `mesh_map.txt` that holds the favouring uncertainty triggers.
const FAVOURED: &str = "favoured uncertainty";

/// MeSH main terms per column, and the uncertainty triggers the curators indexed.
#[derive(Debug, Clone)]
pub struct MeshMap {
    columns: Vec<(Observation, RuleSection)>,
    favoured: Vec<regex::Regex>,
}

impl MeshMap {
    /// The map in `dir/mesh_map.txt`, or the built-in one.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let (favoured, sections): (Vec<_>, Vec<_>) = load_rules(dir, "mesh_map.txt", MESH_MAP)?
            .into_iter()
            .partition(|s| s.header == FAVOURED);
        let favoured = favoured.into_iter().flat_map(|s| s.patterns).collect();
        sections
            .into_iter()
            .map(|s| {
                let o = Observation::parse(&s.header).ok_or_else(|| ReportError::Rules {
                    file: "mesh_map.txt".into(),
                    line: 0,
                    reason: format!("unknown observation [{}]", s.header),
                })?;
                Ok((o, s))
            })
            .collect::<Result<Vec<_>>>()
            .map(|columns| Self { columns, favoured })
    }

    /// Whether a present, uncertain mention among `mentions` of `o` has a favouring trigger.
    fn favoured(&self, mentions: &[Mention], o: Observation) -> bool {
        mentions.iter().any(|m| {
            m.observation == o
                && m.status == Status::Uncertain
                && !m.historical
                && m.trigger
                    .as_deref()
                    .is_some_and(|t| self.favoured.iter().any(|p| p.is_match(t)))
        })
    }

    /// Whether any of `mesh` maps to `o`.
    pub fn has(&self, mesh: &[String], o: Observation) -> bool {
        mesh.iter().any(|term| {
            let main = term.split('/').next().unwrap_or("").trim();
            self.columns
                .iter()
                .filter(|(x, _)| *x == o)
                .any(|(_, s)| s.patterns.iter().any(|p| p.is_match(main)))
        })
    }

    /// Whether the record was indexed at all.
    pub fn indexed(mesh: &[String]) -> bool {
        !(mesh.is_empty() || mesh.iter().all(|t| t.eq_ignore_ascii_case("No Indexing")))
    }
}

/// Precision, recall and F1 of one labeller on one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// 95% percentile-bootstrap interval of F1 over reports.
    pub f1_ci95: (f64, f64),
}

/// One column's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnEvaluation {
    pub observation: Observation,
    /// Reports whose MeSH terms map to the column.
    pub reference_positives: usize,
    /// radlens' labeller, uncertain counted as positive (the headline).
    pub labeler: Scores,
    /// radlens' labeller, uncertain counted as negative.
    pub labeler_uncertain_negative: Scores,
    /// radlens' labeller, uncertain counted as positive only with a favouring trigger.
    pub labeler_favoured: Scores,
    /// The keyword labeller: the same mention patterns without context rules.
    pub keyword_baseline: Scores,
}

/// The whole evaluation, as `radlens report label-eval` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelEvaluation {
    pub corpus: String,
    pub part: String,
    /// Reports evaluated (indexed ones of the part).
    pub reports: usize,
    /// Reports of the part left out because the curators did not index them.
    pub not_indexed: usize,
    pub bootstrap_resamples: usize,
    pub conventions: String,
    pub columns: Vec<ColumnEvaluation>,
}

fn scores(pred: &[bool], gold: &[bool], resamples: usize, seed: u64) -> Scores {
    let count = |idx: &mut dyn Iterator<Item = usize>| {
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for i in idx {
            match (pred[i], gold[i]) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        (tp, fp, fn_)
    };
    let f1 = |(tp, fp, fn_): (usize, usize, usize)| {
        if tp + fp + fn_ == 0 {
            f64::NAN
        } else {
            2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
        }
    };
    let (tp, fp, fn_) = count(&mut (0..pred.len()));
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    Scores {
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: f1((tp, fp, fn_)),
        f1_ci95: bootstrap_ci(pred.len(), resamples, seed, |idx| {
            f1(count(&mut idx.iter().copied()))
        }),
    }
}

/// Evaluate `labeler` on `records` (one part of the corpus, named `corpus`/`part`).
pub fn evaluate(
    labeler: &Labeler,
    map: &MeshMap,
    records: &[IuRecord],
    corpus: &str,
    part: &str,
    resamples: usize,
    seed: u64,
) -> LabelEvaluation {
    let indexed: Vec<&IuRecord> = records
        .iter()
        .filter(|r| MeshMap::indexed(&r.mesh))
        .collect();
    let labelled: Vec<(Labels, Vec<Mention>, Labels)> = indexed
        .iter()
        .map(|r| {
            let doc = r.document();
            let (labels, mentions) = labeler.label(&doc);
            (labels, mentions, labeler.keyword_labels(&doc))
        })
        .collect();
    let columns = Observation::COLUMNS
        .iter()
        .map(|&o| {
            let gold: Vec<bool> = indexed.iter().map(|r| map.has(&r.mesh, o)).collect();
            // (keyword baseline?, accepted statuses) -> per-report prediction
            let pred = |keyword: bool, accept: &dyn Fn(Status) -> bool| {
                labelled
                    .iter()
                    .map(|(ours, _, kw)| if keyword { kw } else { ours }.get(o).is_some_and(accept))
                    .collect::<Vec<bool>>()
            };
            let favoured: Vec<bool> = labelled
                .iter()
                .map(|(ours, mentions, _)| match ours.get(o) {
                    Some(Status::Positive) => true,
                    Some(Status::Uncertain) => map.favoured(mentions, o),
                    _ => false,
                })
                .collect();
            let pos_or_unc = |s: Status| s != Status::Negative;
            let pos = |s: Status| s == Status::Positive;
            ColumnEvaluation {
                observation: o,
                reference_positives: gold.iter().filter(|&&g| g).count(),
                labeler: scores(&pred(false, &pos_or_unc), &gold, resamples, seed),
                labeler_uncertain_negative: scores(&pred(false, &pos), &gold, resamples, seed),
                labeler_favoured: scores(&favoured, &gold, resamples, seed),
                keyword_baseline: scores(&pred(true, &pos), &gold, resamples, seed),
            }
        })
        .collect();
    LabelEvaluation {
        corpus: corpus.to_string(),
        part: part.to_string(),
        reports: indexed.len(),
        not_indexed: records.len() - indexed.len(),
        bootstrap_resamples: resamples,
        conventions: "reference positive: a MeSH term mapped to the column (rules/mesh_map.txt; No Finding: 'normal'); labeler positive: 1 or -1 (uncertain as positive), also reported with -1 as negative and with -1 as positive only after a favouring trigger (mesh_map.txt [favoured uncertainty]); keyword baseline: any mention pattern anywhere in findings/impression; F1 interval: 95% percentile bootstrap over reports".into(),
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_hand() {
        // tp 2, fp 1, fn 1: precision 2/3, recall 2/3, F1 2/3
        let pred = [true, true, true, false, false];
        let gold = [true, true, false, true, false];
        let s = scores(&pred, &gold, 200, 1);
        assert_eq!(
            (s.true_positives, s.false_positives, s.false_negatives),
            (2, 1, 1)
        );
        assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!(s.f1_ci95.0 <= s.f1 && s.f1 <= s.f1_ci95.1);
    }

    #[test]
    fn mesh_terms_map_on_their_main_term_only() {
        let map = MeshMap::load(None).unwrap();
        let mesh = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(map.has(
            &mesh(&["Cardiomegaly/borderline"]),
            Observation::Cardiomegaly
        ));
        assert!(map.has(
            &mesh(&["Pulmonary Atelectasis/base/left"]),
            Observation::Atelectasis
        ));
        assert!(!map.has(&mesh(&["Subcutaneous Emphysema"]), Observation::Emphysema));
        assert!(map.has(&mesh(&["normal"]), Observation::NoFinding));
        assert!(!MeshMap::indexed(&mesh(&["No Indexing"])));
    }

    #[test]
    fn only_favouring_uncertainty_triggers_count_in_the_third_convention() {
        let labeler = Labeler::load(None).unwrap();
        let map = MeshMap::load(None).unwrap();
        let favoured = |text: &str| {
            let (labels, mentions) = labeler.label(&format!("FINDINGS: {text}"));
            assert_eq!(
                labels.get(Observation::Atelectasis),
                Some(Status::Uncertain),
                "{text}"
            );
            map.favoured(&mentions, Observation::Atelectasis)
        };
        assert!(favoured(
            "Left basilar opacity consistent with atelectasis."
        ));
        assert!(favoured("Bibasilar atelectasis versus scarring."));
        assert!(!favoured("Left basilar opacity may represent atelectasis."));
        assert!(!favoured("Streaky opacity, possibly atelectasis."));
        // the favoured section is no column
        assert!(!map.has(&["borderline".to_string()], Observation::Cardiomegaly));
    }
}

//! `radlens seg compare`: models that `seg eval` scored on the same cases, side by side.
//! Each model's Dice and HD95 per class with bootstrap CIs, and each model against a
//! reference, paired by case: the mean difference with a paired-bootstrap CI, the Wilcoxon
//! signed-rank test, and Holm's adjustment over every test of a metric. It reads the
//! evaluations' `per_image.csv`, so an expensive evaluation (SemanticGAN's inversion) is
//! run once and compared many times.

use crate::error::{Result, SegError};
use crate::evaluate::PER_IMAGE_FILE;
use radlens_eval::compare::{holm, paired_bootstrap, wilcoxon_signed_rank};
use radlens_eval::stats::Summary;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Bootstrap resamples of every interval.
const RESAMPLES: usize = 2000;

/// The columns of one `per_image.csv` row that the comparison reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CaseMetrics {
    pub id: String,
    pub class: String,
    pub dice: f64,
    /// Empty when a mask is empty (no distance).
    pub hd95: Option<f64>,
}

/// An evaluation's per-case metrics, from `<dir>/per_image.csv`.
pub fn read_per_image(dir: &Path) -> Result<Vec<CaseMetrics>> {
    let path = dir.join(PER_IMAGE_FILE);
    let bad = |reason: String| SegError::Config {
        path: path.clone(),
        reason,
    };
    let mut rdr = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let rows = rdr
        .deserialize()
        .collect::<std::result::Result<Vec<CaseMetrics>, _>>()
        .map_err(|e| bad(format!("not a `seg eval` per-image table: {e}")))?;
    if rows.is_empty() {
        return Err(bad("no cases".into()));
    }
    Ok(rows)
}

/// One metric of one class of one model over cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub dice: Summary,
    /// `None` when no case has a distance.
    pub hd95: Option<Summary>,
}

/// A model's scores per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    pub model: String,
    pub classes: BTreeMap<String, ClassScores>,
}

/// A paired test of one metric: mean of (model - reference) over the cases both scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedMetric {
    pub n: usize,
    pub mean_difference: f64,
    pub ci95: [f64; 2],
    pub p_wilcoxon: Option<f64>,
    /// Holm-adjusted over every test of this metric in the comparison.
    pub p_holm: Option<f64>,
}

/// One class of a model against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedClass {
    pub class: String,
    pub dice: PairedMetric,
    /// Over the cases with a distance in both.
    pub hd95: Option<PairedMetric>,
}

/// A model against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVsReference {
    pub model: String,
    pub reference: String,
    pub classes: Vec<PairedClass>,
}

/// `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    pub reference: String,
    pub seed: u64,
    pub models: Vec<ModelScores>,
    pub comparisons: Vec<ModelVsReference>,
}

/// (id, class) -> metrics of one evaluation.
type ByCase<'a> = HashMap<(&'a str, &'a str), &'a CaseMetrics>;

fn by_case(rows: &[CaseMetrics]) -> ByCase<'_> {
    rows.iter()
        .map(|r| ((r.id.as_str(), r.class.as_str()), r))
        .collect()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn paired_metric(a: &[f64], b: &[f64], seed: u64) -> Option<PairedMetric> {
    let boot = paired_bootstrap(a, b, RESAMPLES, seed)?;
    Some(PairedMetric {
        n: boot.n,
        mean_difference: boot.mean,
        ci95: boot.ci95,
        p_wilcoxon: wilcoxon_signed_rank(a, b).map(|w| w.p_value),
        p_holm: None,
    })
}

/// Compares `evaluations` (name, per-case metrics) with the one named `reference`.
pub fn compare(
    evaluations: &[(String, Vec<CaseMetrics>)],
    reference: &str,
    seed: u64,
) -> Result<CompareSummary> {
    let names: BTreeSet<&str> = evaluations.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() != evaluations.len() || evaluations.len() < 2 {
        return Err(SegError::Invalid(
            "compare needs at least two evaluations with distinct names".into(),
        ));
    }
    let (_, ref_rows) = evaluations
        .iter()
        .find(|(n, _)| n == reference)
        .ok_or_else(|| SegError::Invalid(format!("no evaluation is named '{reference}'")))?;
    let ref_cases = by_case(ref_rows);
    let models = evaluations
        .iter()
        .map(|(name, rows)| {
            let classes: BTreeSet<&str> = rows.iter().map(|r| r.class.as_str()).collect();
            let classes = classes
                .into_iter()
                .filter_map(|c| {
                    let of = |f: fn(&CaseMetrics) -> Option<f64>| -> Vec<f64> {
                        rows.iter().filter(|r| r.class == c).filter_map(f).collect()
                    };
                    let dice = Summary::of(&of(|r| Some(r.dice)), seed)?;
                    let hd95 = Summary::of(&of(|r| finite(r.hd95)), seed);
                    Some((c.to_string(), ClassScores { dice, hd95 }))
                })
                .collect();
            ModelScores {
                model: name.clone(),
                classes,
            }
        })
        .collect();
    let mut comparisons: Vec<ModelVsReference> = evaluations
        .iter()
        .filter(|(n, _)| n != reference)
        .map(|(name, rows)| {
            let mine = by_case(rows);
            let classes: BTreeSet<&str> = rows.iter().map(|r| r.class.as_str()).collect();
            let classes = classes
                .into_iter()
                .filter_map(|class| {
                    let mut keys: Vec<(&str, &str)> = mine
                        .keys()
                        .filter(|k| k.1 == class && ref_cases.contains_key(k))
                        .copied()
                        .collect();
                    keys.sort();
                    let pairs = |f: fn(&CaseMetrics) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
                        keys.iter()
                            .filter_map(|k| Some((f(mine[k])?, f(ref_cases[k])?)))
                            .unzip()
                    };
                    let (a, b) = pairs(|r| Some(r.dice));
                    let dice = paired_metric(&a, &b, seed)?;
                    let (a, b) = pairs(|r| finite(r.hd95));
                    Some(PairedClass {
                        class: class.to_string(),
                        dice,
                        hd95: paired_metric(&a, &b, seed),
                    })
                })
                .collect();
            ModelVsReference {
                model: name.clone(),
                reference: reference.to_string(),
                classes,
            }
        })
        .collect();
    adjust(&mut comparisons, |c| Some(&mut c.dice));
    adjust(&mut comparisons, |c| c.hd95.as_mut());
    Ok(CompareSummary {
        reference: reference.to_string(),
        seed,
        models,
        comparisons,
    })
}

/// Holm's adjustment over the tests `metric` picks from every class of every comparison.
fn adjust(
    comparisons: &mut [ModelVsReference],
    metric: fn(&mut PairedClass) -> Option<&mut PairedMetric>,
) {
    let mut tests: Vec<&mut PairedMetric> = comparisons
        .iter_mut()
        .flat_map(|c| c.classes.iter_mut())
        .filter_map(metric)
        .filter(|m| m.p_wilcoxon.is_some())
        .collect();
    let p: Vec<f64> = tests.iter().map(|t| t.p_wilcoxon.unwrap_or(1.0)).collect();
    for (t, adj) in tests.iter_mut().zip(holm(&p)) {
        t.p_holm = Some(adj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dice: &[f64], hd: &[Option<f64>]) -> Vec<CaseMetrics> {
        dice.iter()
            .zip(hd)
            .enumerate()
            .map(|(i, (&d, &h))| CaseMetrics {
                id: format!("c{i}"),
                class: "lung".into(),
                dice: d,
                hd95: h,
            })
            .collect()
    }

    #[test]
    fn paired_differences_by_hand() {
        let reference = rows(
            &[0.9, 0.8, 0.7, 0.6],
            &[Some(4.0), Some(5.0), None, Some(6.0)],
        );
        // better on every case, by 0.01 to 0.04 (distinct magnitudes, so no ties); distances
        // 1 mm smaller where both have one
        let better = rows(
            &[0.91, 0.82, 0.73, 0.64],
            &[Some(3.0), Some(4.0), Some(9.0), Some(5.0)],
        );
        let mut other = rows(&[0.9, 0.8, 0.7], &[None, None, None]);
        other[2].id = "elsewhere".into();
        let s = compare(
            &[
                ("ref".into(), reference),
                ("better".into(), better),
                ("other".into(), other),
            ],
            "ref",
            1,
        )
        .unwrap();
        assert_eq!(s.models.len(), 3);
        let dice = &s.models[1].classes["lung"].dice;
        assert!((dice.mean - 0.775).abs() < 1e-12 && dice.n == 4);
        let c = &s.comparisons[0].classes[0];
        assert_eq!(s.comparisons[0].model, "better");
        assert_eq!(c.dice.n, 4);
        assert!((c.dice.mean_difference - 0.025).abs() < 1e-12);
        assert!(c.dice.ci95[0] >= 0.01 - 1e-12 && c.dice.ci95[1] <= 0.04 + 1e-12);
        assert!(c.dice.ci95[0] < 0.025 && c.dice.ci95[1] > 0.025);
        // four positive differences: exact two-sided p = 2/16
        assert!((c.dice.p_wilcoxon.unwrap() - 0.125).abs() < 1e-12);
        let hd = c.hd95.as_ref().unwrap();
        assert_eq!(hd.n, 3, "the case without a reference distance is left out");
        assert!((hd.mean_difference + 1.0).abs() < 1e-12);
        // "other" pairs on its two shared cases, with no difference and no distances
        let o = &s.comparisons[1].classes[0];
        assert_eq!(
            (o.dice.n, o.dice.p_wilcoxon, o.hd95.is_none()),
            (2, None, true)
        );
        // Holm over the Dice tests: one test with a p-value, unchanged
        assert_eq!(c.dice.p_holm, c.dice.p_wilcoxon);
    }

    #[test]
    fn bad_inputs_are_named() {
        let r = rows(&[0.9], &[None]);
        let e = compare(&[("a".into(), r.clone())], "a", 0).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
        let e = compare(&[("a".into(), r.clone()), ("b".into(), r)], "c", 0).unwrap_err();
        assert!(e.to_string().contains("'c'"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read_per_image(dir.path()).unwrap_err().to_string();
        assert!(e.contains("per_image.csv"), "{e}");
        std::fs::write(
            dir.path().join(PER_IMAGE_FILE),
            "id,class,dice,hd95\nc0,lung,high,\n",
        )
        .unwrap();
        let e = read_per_image(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("per_image.csv") && e.contains("per-image table"),
            "{e}"
        );
        std::fs::write(
            dir.path().join(PER_IMAGE_FILE),
            "id,sex,class,dice,hd95,nll\nc0,male,lung,0.5,,1.0\nc1,,lung,0.7,3.5,\n",
        )
        .unwrap();
        let rows = read_per_image(dir.path()).unwrap();
        assert_eq!(rows[0].hd95, None);
        assert_eq!(rows[1].hd95, Some(3.5));
    }
}

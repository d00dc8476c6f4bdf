//! `radlens seg shift`: one model on an in-domain and an out-of-domain set. Per
//! class: each domain's mean Dice of the mean prediction with its interval, the drop
//! with a two-sample bootstrap interval and a permutation p-value, and how much of
//! the drop the labelling protocol explains.
//!
//! The protocol part: SCR (JSRT) lung masks stop at the heart border, while other
//! protocols (covid-cxr's) include the lung behind the heart. A model trained on SCR
//! labels that retrocardiac lung "heart", which costs it Dice it could not have
//! earned. Each lung's Dice is therefore also computed with the reference pixels the
//! model labels heart left out of scoring (of both masks), on both domains alike: the
//! out-of-domain drop that remains is what the model gets wrong beyond the
//! convention. The model's own heart stands in for the heart border, which the
//! out-of-domain set does not annotate; this is an approximation, stated in the
//! summary.
//!
//! Films are resampled as independent here, although covid-cxr has patients with
//! several films: the intervals are somewhat too narrow there (`seg subgroups`
//! resamples patients).

use crate::data::ClassMap;
use crate::error::{Result, SegError};
use crate::evaluate::{class_map, score_cases, EvalEvent};
use crate::predict::Predictor;
use radlens_core::Observer;
use radlens_eval::compare::two_sample_bootstrap;
use radlens_eval::groups::compare_groups;
use radlens_eval::{overlap, Summary};
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};

/// Bootstrap resamples and permutations.
pub const RESAMPLES: usize = 2000;
pub const PERMUTATIONS: usize = 10_000;

/// The model class whose pixels stand in for the retrocardiac region.
const HEART: &str = "heart";

/// One image's Dice per scored class, plain and with the reference pixels the
/// model labels heart left out (`None` for the heart itself or without a heart class).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDice {
    pub id: String,
    /// (class name, Dice, Dice with model-heart pixels excluded).
    pub classes: Vec<(String, f64, Option<f64>)>,
}

/// Scores the mean prediction of every case in `cases`.
pub fn score_domain(
    predictor: &Predictor,
    dataset: &Dataset,
    cases: &[&Sample],
    observer: &dyn Observer<EvalEvent>,
) -> Result<Vec<ImageDice>> {
    let map: ClassMap = class_map(predictor, dataset)?;
    let names = predictor.model.classes();
    let heart = names.id(HEART);
    score_cases(cases, &map, observer, |_, case, img, reference| {
        let full = predictor.predict(img, 0, 1.0, 0)?.mean_mask_to_image();
        let classes = map
            .annotated
            .iter()
            .map(|&c| {
                let (p, y) = (full.class_mask(c), reference.class_mask(c));
                let excluded = heart.filter(|&h| h != c).map(|h| {
                    // predicted pixels of class c are never heart, so only the
                    // reference loses pixels
                    let y_kept: Vec<bool> = y
                        .iter()
                        .zip(&full.labels)
                        .map(|(&in_ref, &label)| in_ref && label != h)
                        .collect();
                    overlap::dice(&p, &y_kept)
                });
                (names.name(c).to_string(), overlap::dice(&p, &y), excluded)
            })
            .collect();
        Ok(ImageDice {
            id: case.id.clone(),
            classes,
        })
    })
}

/// A mean with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub ci: [f64; 2],
}

impl MeanCi {
    fn of(values: &[f64], seed: u64) -> Option<Self> {
        Summary::of(values, seed).map(|s| Self {
            n: s.n,
            mean: s.mean,
            ci: [s.ci95_low, s.ci95_high],
        })
    }
}

/// In-domain minus out-of-domain mean Dice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    pub drop: f64,
    pub ci: [f64; 2],
    /// Permutation test of the domain label (two-sided, on |drop|).
    pub p_value: f64,
}

/// One class on both domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassShift {
    pub class: String,
    pub in_domain: MeanCi,
    pub out_of_domain: MeanCi,
    pub drop: Drop,
    /// The same with the reference pixels the model labels heart left out of scoring
    /// on both domains; `None` for the heart and for models without one.
    pub protocol_matched: Option<ProtocolMatched>,
}

/// A class's scores with the retrocardiac region (model heart) left out of scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolMatched {
    pub in_domain: MeanCi,
    pub out_of_domain: MeanCi,
    pub drop: Drop,
    /// (plain drop - matched drop) / plain drop: the share of the drop that the
    /// labelling convention explains (can exceed 1 or be negative when the drop is
    /// small).
    pub explained_share: f64,
}

/// `summary.json` of `seg shift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftSummary {
    pub model: String,
    pub in_domain: String,
    pub out_of_domain: String,
    pub classes: Vec<ClassShift>,
    pub protocol: String,
}

pub const PROTOCOL: &str = "Dice of the mean prediction on the original image grid (seg eval protocol), per class, on each domain. Means with 95% percentile bootstrap intervals (2000 resamples); drop = in-domain mean - out-of-domain mean with a two-sample bootstrap interval (each domain resampled on its own) and a permutation p-value (10,000 permutations of the domain label). Protocol-matched: the reference pixels the model labels heart are left out of scoring on both domains, standing in for the retrocardiac lung that SCR gives to the heart; the model's heart is an approximation of the true heart border.";

fn drop(a: &[f64], b: &[f64], seed: u64) -> Option<Drop> {
    let diff = two_sample_bootstrap(a, b, RESAMPLES, seed)?;
    let values: Vec<f64> = a.iter().chain(b).copied().collect();
    let labels: Vec<usize> = (0..a.len()).map(|_| 0).chain(b.iter().map(|_| 1)).collect();
    // Films, not patients, are the units here (see the module's note on covid-cxr).
    let units: Vec<usize> = (0..values.len()).collect();
    let test = compare_groups(
        &values,
        &labels,
        &units,
        2,
        RESAMPLES,
        PERMUTATIONS,
        seed + 1,
    )?;
    Some(Drop {
        drop: diff.mean,
        ci: diff.ci95,
        p_value: test.p_value,
    })
}

/// Compares the scores of one model on its own domain with another.
pub fn compare_domains(
    in_domain: &[ImageDice],
    out_of_domain: &[ImageDice],
    seed: u64,
) -> Result<Vec<ClassShift>> {
    let column = |rows: &[ImageDice], class: &str, matched: bool| -> Vec<f64> {
        rows.iter()
            .flat_map(|r| r.classes.iter())
            .filter(|(c, _, _)| c == class)
            .filter_map(|(_, d, m)| if matched { *m } else { Some(*d) })
            .collect()
    };
    let names: Vec<String> = out_of_domain
        .first()
        .map(|r| r.classes.iter().map(|(c, _, _)| c.clone()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (ci, class) in names.iter().enumerate() {
        let s = seed.wrapping_add(100 * ci as u64);
        let pair = |matched: bool| {
            let (a, b) = (
                column(in_domain, class, matched),
                column(out_of_domain, class, matched),
            );
            Some((
                MeanCi::of(&a, s)?,
                MeanCi::of(&b, s + 1)?,
                drop(&a, &b, s + 2)?,
            ))
        };
        let Some((in_d, out_d, plain)) = pair(false) else {
            return Err(SegError::Invalid(format!(
                "class {class} is scored on only one of the two datasets"
            )));
        };
        let protocol_matched = pair(true).map(|(i, o, d)| ProtocolMatched {
            in_domain: i,
            out_of_domain: o,
            drop: d,
            explained_share: (plain.drop - d.drop) / plain.drop,
        });
        out.push(ClassShift {
            class: class.clone(),
            in_domain: in_d,
            out_of_domain: out_d,
            drop: plain,
            protocol_matched,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dice: &[(f64, f64)]) -> Vec<ImageDice> {
        dice.iter()
            .enumerate()
            .map(|(i, &(d, m))| ImageDice {
                id: i.to_string(),
                classes: vec![
                    ("left_lung".into(), d, Some(m)),
                    ("heart".into(), 0.9, None),
                ],
            })
            .collect()
    }

    #[test]
    fn drop_and_the_share_the_protocol_explains() {
        // in-domain 0.97 both ways; out-of-domain 0.77 plain, 0.92 with the heart
        // region left out: drop 0.20, matched drop 0.05, explained share 0.75
        let a = rows(&[(0.96, 0.96), (0.98, 0.98), (0.97, 0.97), (0.97, 0.97)]);
        let b = rows(&[(0.76, 0.91), (0.78, 0.93), (0.77, 0.92), (0.77, 0.92)]);
        let shifts = compare_domains(&a, &b, 3).unwrap();
        let ll = &shifts[0];
        assert_eq!(ll.class, "left_lung");
        assert!((ll.drop.drop - 0.20).abs() < 1e-9);
        assert!(
            ll.drop.ci[0] > 0.18 && ll.drop.ci[1] < 0.22,
            "{:?}",
            ll.drop
        );
        let m = ll.protocol_matched.as_ref().unwrap();
        assert!((m.drop.drop - 0.05).abs() < 1e-9);
        assert!((m.explained_share - 0.75).abs() < 1e-9);
        // 4 vs 4 perfectly separated: the smallest permutation p is 2 / C(8, 4) = 1/35
        assert!(ll.drop.p_value < 0.06, "{}", ll.drop.p_value);
        let heart = &shifts[1];
        assert!(heart.protocol_matched.is_none());
        assert!(heart.drop.drop.abs() < 1e-12);
    }

    #[test]
    fn a_class_scored_on_one_domain_only_is_an_error() {
        let a = vec![ImageDice {
            id: "a".into(),
            classes: vec![("heart".into(), 0.9, None)],
        }];
        let b = rows(&[(0.8, 0.9)]);
        let err = compare_domains(&a, &b, 0).unwrap_err().to_string();
        assert!(err.contains("left_lung"), "{err}");
    }
}

//! `radlens seg robustness`: one or more models on perturbed copies of each case.
//!
//! Every case is scored clean and under each [`Perturbation`] at each level; the
//! perturbation is drawn once per (case, perturbation, level) from a seed of its own
//! and shown to every model, so models are compared on identical films (paired).
//! Per image: Dice and HD95 of the mean prediction averaged over the annotated
//! structures (the `seg eval` protocol), ECE and, for the SSN, sample diversity.
//! Cases are scored in parallel; rows come back in case order.
//! Summaries: means with 95% bootstrap intervals per level; with two models, the
//! corruption error of the first relative to the second and, per level, a paired
//! bootstrap of the Dice difference and a Wilcoxon signed-rank test, Holm-adjusted
//! over all levels and perturbations.

use crate::case_results::CaseResults;
use crate::data::ClassMap;
use crate::error::{Result, SegError};
use crate::evaluate::{class_map, score_cases, ClassRow, EvalEvent, ImageRow, ImageScoring};
use crate::predict::Predictor;
use radlens_core::Observer;
use radlens_eval::compare::{corruption_error, holm, paired_bootstrap, wilcoxon_signed_rank};
use radlens_eval::Summary;
use radlens_io::perturb::{Perturbation, LEVELS};
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A model under test and how to sample it.
pub struct ModelUnderTest<'a> {
    /// The name results use (e.g. the run folder's name).
    pub name: String,
    pub predictor: &'a Predictor,
    pub samples: usize,
    pub temperature: f64,
}

/// One model's scores on one case under one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessRow {
    pub model: String,
    pub id: String,
    /// `clean` or the perturbation's name.
    pub perturbation: String,
    /// 0 for the clean film.
    pub level: usize,
    pub param: f64,
    /// Mean Dice over the annotated structures.
    pub dice: f64,
    /// Mean HD95 over the structures where it is defined (mm or px as in `seg eval`).
    pub hd95: Option<f64>,
    pub ece: Option<f64>,
    pub sample_diversity: Option<f64>,
}

/// The seed of the perturbation of case `case` by perturbation `kind` at `level`.
fn perturbation_seed(seed: u64, case: usize, kind: usize, level: usize) -> u64 {
    seed ^ ((case as u64) << 32) ^ ((kind as u64) << 8) ^ level as u64
}

/// Scores every model in `models` on `cases`, clean and under each of `perturbations`
/// at every level; `seed` seeds the perturbations. Reports each case as `seg eval` does.
/// With `saved`, a case whose rows it holds is not scored again, and each newly scored
/// case's rows are stored there as soon as they are complete.
pub fn run_robustness(
    models: &[ModelUnderTest],
    dataset: &Dataset,
    cases: &[&Sample],
    perturbations: &[Perturbation],
    seed: u64,
    saved: Option<&CaseResults>,
    observer: &dyn Observer<EvalEvent>,
) -> Result<Vec<RobustnessRow>> {
    let Some(first) = models.first() else {
        return Err(SegError::Invalid("no model to test".into()));
    };
    let map = class_map(first.predictor, dataset)?;
    for m in &models[1..] {
        let other = class_map(m.predictor, dataset)?;
        if other.annotated != map.annotated {
            return Err(SegError::Invalid(format!(
                "models {} and {} score different structures on {}",
                first.name, m.name, dataset.spec_name
            )));
        }
    }
    // Each perturbed film is made, scored by every model and dropped.
    let per_case = score_cases(cases, &map, observer, |k, case, img, reference| {
        if let Some(rows) = saved.and_then(|s| s.load(k, &case.id)) {
            return Ok(rows);
        }
        let mut rows = Vec::new();
        let mut score_all = |name: &str,
                             level: usize,
                             param: f64,
                             pimg: &radlens_io::XrayImage,
                             pref: &radlens_io::LabelMap|
         -> Result<()> {
            for m in models {
                rows.push(RobustnessRow {
                    model: m.name.clone(),
                    id: case.id.clone(),
                    perturbation: name.to_string(),
                    level,
                    param,
                    ..score(m, &map, case, k, pimg, pref)?
                });
            }
            Ok(())
        };
        score_all("clean", 0, 0.0, img, reference)?;
        for (pi, p) in perturbations.iter().enumerate() {
            for level in 1..=LEVELS {
                let seed = perturbation_seed(seed, k, pi, level);
                let (pimg, pref) = p.apply(level, img, reference, seed)?;
                score_all(p.name(), level, p.params()[level - 1], &pimg, &pref)?;
            }
        }
        if let Some(s) = saved {
            s.save(k, &case.id, &rows)?;
        }
        Ok(rows)
    })?;
    Ok(per_case.into_iter().flatten().collect())
}

fn score(
    m: &ModelUnderTest,
    map: &ClassMap,
    case: &Sample,
    k: usize,
    img: &radlens_io::XrayImage,
    reference: &radlens_io::LabelMap,
) -> Result<RobustnessRow> {
    let scoring = ImageScoring {
        predictor: m.predictor,
        map,
        samples: if m.predictor.model.is_stochastic() {
            m.samples
        } else {
            0
        },
        temperature: m.temperature,
        seed: k as u64,
    };
    let (classes, image): (Vec<ClassRow>, ImageRow) = scoring.score(case, img, reference)?;
    let n = classes.len().max(1) as f64;
    let hd: Vec<f64> = classes.iter().filter_map(|c| c.hd95).collect();
    Ok(RobustnessRow {
        model: String::new(),
        id: String::new(),
        perturbation: String::new(),
        level: 0,
        param: 0.0,
        dice: classes.iter().map(|c| c.dice).sum::<f64>() / n,
        hd95: (!hd.is_empty()).then(|| hd.iter().sum::<f64>() / hd.len() as f64),
        ece: image.ece,
        sample_diversity: image.sample_diversity,
    })
}

/// One level of one perturbation (or the clean films) for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelSummary {
    pub level: usize,
    pub param: f64,
    pub n: usize,
    pub dice_mean: f64,
    pub dice_ci: [f64; 2],
    pub hd95_mean: Option<f64>,
    pub hd95_ci: Option<[f64; 2]>,
    pub ece: Option<f64>,
    pub ece_ci: Option<[f64; 2]>,
    pub sample_diversity: Option<f64>,
    pub sample_diversity_ci: Option<[f64; 2]>,
}

/// One model's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRobustness {
    pub clean: LevelSummary,
    /// Per perturbation name, its levels 1..=5.
    pub perturbations: BTreeMap<String, Vec<LevelSummary>>,
}

/// The first model against the second at one level of one perturbation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedLevel {
    pub level: usize,
    /// Mean of (first - second) Dice over cases.
    pub delta_dice_mean: f64,
    pub delta_dice_ci: [f64; 2],
    pub p_wilcoxon: Option<f64>,
    /// Holm-adjusted over every level of every perturbation.
    pub p_holm: Option<f64>,
}

/// The paired comparison of the first model with the second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub model: String,
    pub reference: String,
    /// Per perturbation: sum over levels of (1 - Dice) of `model` / that of `reference`.
    pub corruption_error: BTreeMap<String, f64>,
    /// Mean corruption error over the perturbations.
    pub mean_corruption_error: f64,
    pub clean: PairedLevel,
    pub perturbations: BTreeMap<String, Vec<PairedLevel>>,
}

/// `summary.json` of `seg robustness`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessSummary {
    pub dataset: String,
    pub images: usize,
    pub seed: u64,
    /// The first model's results (`perturbations` at the top level, as scripts read them).
    pub model: String,
    pub clean: LevelSummary,
    pub perturbations: BTreeMap<String, Vec<LevelSummary>>,
    /// Every model's results, keyed by name.
    pub models: BTreeMap<String, ModelRobustness>,
    /// With two or more models: the first against the second.
    pub comparison: Option<Comparison>,
    /// The test-time inversion steps of each SemanticGAN model, by name (set by whoever
    /// loaded the models; absent from summaries written before it was recorded).
    #[serde(default)]
    pub inversion_steps: BTreeMap<String, usize>,
    pub protocol: String,
}

/// The protocol recorded in every robustness summary.
pub const PROTOCOL: &str = "Each case scored clean and under each perturbation at levels 1-5, perturbation seeded per (case, perturbation, level) and applied to the film before preprocessing; rotation rotates the reference too. Per image: mean over annotated structures of Dice and HD95 of the mean prediction on the original grid; ECE (10 bins) and SSN sample diversity at model resolution. Means with 95% percentile bootstrap intervals (2000 resamples, seeded). Corruption error = sum over levels of (1 - Dice) of the model / that of the reference model. Paired: bootstrap of the mean Dice difference over cases (2000 resamples) and two-sided Wilcoxon signed-rank test, Holm-adjusted over all perturbation levels.";

fn level_summary(rows: &[&RobustnessRow], level: usize, param: f64, seed: u64) -> LevelSummary {
    let pick = |f: fn(&RobustnessRow) -> Option<f64>, s: u64| {
        let v: Vec<f64> = rows.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect();
        Summary::of(&v, seed.wrapping_add(s))
    };
    let dice = pick(|r| Some(r.dice), 1);
    let hd95 = pick(|r| r.hd95, 2);
    let ece = pick(|r| r.ece, 3);
    let div = pick(|r| r.sample_diversity, 4);
    let ci = |s: &Option<Summary>| s.as_ref().map(|s| [s.ci95_low, s.ci95_high]);
    LevelSummary {
        level,
        param,
        n: rows.len(),
        dice_mean: dice.as_ref().map_or(f64::NAN, |s| s.mean),
        dice_ci: ci(&dice).unwrap_or([f64::NAN; 2]),
        hd95_mean: hd95.as_ref().map(|s| s.mean),
        hd95_ci: ci(&hd95),
        ece: ece.as_ref().map(|s| s.mean),
        ece_ci: ci(&ece),
        sample_diversity: div.as_ref().map(|s| s.mean),
        sample_diversity_ci: ci(&div),
    }
}

/// Rows of one model under one condition, in case order.
fn select<'r>(
    rows: &'r [RobustnessRow],
    model: &str,
    perturbation: &str,
    level: usize,
) -> Vec<&'r RobustnessRow> {
    rows.iter()
        .filter(|r| r.model == model && r.perturbation == perturbation && r.level == level)
        .collect()
}

/// Summarise `rows` of `models` (names, the first is the model under test).
pub fn summarise(
    rows: &[RobustnessRow],
    models: &[String],
    perturbations: &[Perturbation],
    dataset: String,
    seed: u64,
) -> RobustnessSummary {
    let per_model: BTreeMap<String, ModelRobustness> = models
        .iter()
        .map(|m| {
            let clean = level_summary(&select(rows, m, "clean", 0), 0, 0.0, seed);
            let perturbations = perturbations
                .iter()
                .map(|p| {
                    let levels = (1..=LEVELS)
                        .map(|l| {
                            let s = seed.wrapping_add(10 * l as u64);
                            level_summary(&select(rows, m, p.name(), l), l, p.params()[l - 1], s)
                        })
                        .collect();
                    (p.name().to_string(), levels)
                })
                .collect();
            (
                m.clone(),
                ModelRobustness {
                    clean,
                    perturbations,
                },
            )
        })
        .collect();
    let comparison =
        (models.len() >= 2).then(|| compare(rows, &models[0], &models[1], perturbations, seed));
    let first = &per_model[&models[0]];
    RobustnessSummary {
        dataset,
        images: select(rows, &models[0], "clean", 0).len(),
        seed,
        model: models[0].clone(),
        clean: first.clean.clone(),
        perturbations: first.perturbations.clone(),
        models: per_model.clone(),
        comparison,
        inversion_steps: BTreeMap::new(),
        protocol: PROTOCOL.to_string(),
    }
}

fn paired(
    rows: &[RobustnessRow],
    a: &str,
    b: &str,
    p: &str,
    level: usize,
    seed: u64,
) -> PairedLevel {
    let dice = |m| -> Vec<f64> { select(rows, m, p, level).iter().map(|r| r.dice).collect() };
    let (da, db) = (dice(a), dice(b));
    let boot = paired_bootstrap(&da, &db, 2000, seed);
    PairedLevel {
        level,
        delta_dice_mean: boot.map_or(f64::NAN, |b| b.mean),
        delta_dice_ci: boot.map_or([f64::NAN; 2], |b| b.ci95),
        p_wilcoxon: wilcoxon_signed_rank(&da, &db).map(|w| w.p_value),
        p_holm: None,
    }
}

fn compare(
    rows: &[RobustnessRow],
    a: &str,
    b: &str,
    perturbations: &[Perturbation],
    seed: u64,
) -> Comparison {
    let mean_dice = |m: &str, p: &str, l: usize| {
        let v = select(rows, m, p, l);
        v.iter().map(|r| r.dice).sum::<f64>() / v.len().max(1) as f64
    };
    let corruption: BTreeMap<String, f64> = perturbations
        .iter()
        .map(|p| {
            let err = |m: &str| {
                (1..=LEVELS)
                    .map(|l| 1.0 - mean_dice(m, p.name(), l))
                    .collect::<Vec<_>>()
            };
            (p.name().to_string(), corruption_error(&err(a), &err(b)))
        })
        .collect();
    let mut clean = paired(rows, a, b, "clean", 0, seed);
    let mut levels: BTreeMap<String, Vec<PairedLevel>> = perturbations
        .iter()
        .map(|p| {
            let v = (1..=LEVELS)
                .map(|l| paired(rows, a, b, p.name(), l, seed.wrapping_add(l as u64)))
                .collect();
            (p.name().to_string(), v)
        })
        .collect();
    // Holm over every test that has a p-value (clean included)
    let mut tests: Vec<&mut PairedLevel> = std::iter::once(&mut clean)
        .chain(levels.values_mut().flatten())
        .filter(|t| t.p_wilcoxon.is_some())
        .collect();
    let p: Vec<f64> = tests.iter().map(|t| t.p_wilcoxon.unwrap_or(1.0)).collect();
    for (t, adj) in tests.iter_mut().zip(holm(&p)) {
        t.p_holm = Some(adj);
    }
    let mean_corruption_error = corruption.values().sum::<f64>() / corruption.len().max(1) as f64;
    Comparison {
        model: a.to_string(),
        reference: b.to_string(),
        corruption_error: corruption,
        mean_corruption_error,
        clean,
        perturbations: levels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, id: usize, p: &str, level: usize, dice: f64) -> RobustnessRow {
        RobustnessRow {
            model: model.into(),
            id: format!("c{id}"),
            perturbation: p.into(),
            level,
            param: level as f64,
            dice,
            hd95: Some(10.0 * (1.0 - dice)),
            ece: None,
            sample_diversity: None,
        }
    }

    /// Model a loses 0.02 Dice per level under blur and b about 0.04; equal when clean.
    #[test]
    fn summary_and_comparison_by_hand() {
        let mut rows = Vec::new();
        for id in 0..12 {
            let jitter = (id % 3) as f64 * 0.001;
            for m in ["a", "b"] {
                rows.push(row(m, id, "clean", 0, 0.95 + jitter));
            }
            for l in 1..=LEVELS {
                let a = 0.95 + jitter - 0.02 * l as f64;
                // b loses twice as much, plus a little more per case (no tied differences)
                let b = a - 0.02 * l as f64 - 0.0001 * (id + 1) as f64;
                rows.push(row("a", id, "gaussian_blur", l, a));
                rows.push(row("b", id, "gaussian_blur", l, b));
            }
        }
        let s = summarise(
            &rows,
            &["a".into(), "b".into()],
            &[Perturbation::GaussianBlur],
            "jsrt:x".into(),
            1,
        );
        assert_eq!((s.images, s.model.as_str()), (12, "a"));
        let blur = &s.perturbations["gaussian_blur"];
        assert_eq!(blur.len(), 5);
        assert!(
            (blur[2].dice_mean - (0.951 - 0.06)).abs() < 1e-9,
            "{:?}",
            blur[2]
        );
        assert!(blur[2].dice_ci[0] <= blur[2].dice_mean && blur[2].dice_mean <= blur[2].dice_ci[1]);
        assert_eq!(blur[4].param, 6.0);
        let c = s.comparison.unwrap();
        // mean errors per level: a 0.049 + 0.02 l, b 0.049 + 0.04 l + 0.00065
        let ce = (0.245 + 0.3) / (0.245 + 0.6 + 5.0 * 0.00065);
        assert!((c.corruption_error["gaussian_blur"] - ce).abs() < 1e-9);
        let l3 = &c.perturbations["gaussian_blur"][2];
        assert!((l3.delta_dice_mean - 0.06065).abs() < 1e-9);
        // 12 positive differences, no ties: exact p = 2 / 2^12
        assert!((l3.p_wilcoxon.unwrap() - 2.0 / 4096.0).abs() < 1e-12);
        // 5 tests with p-values (clean has none: all differences 0): Holm x5 for the smallest
        assert_eq!(c.clean.p_wilcoxon, None);
        assert!((l3.p_holm.unwrap() - 5.0 * 2.0 / 4096.0).abs() < 1e-12);
    }
}

//! `radlens seg subgroups`: does a model serve every group of patients equally?
//!
//! From one evaluation (per image: Dice and HD95 averaged over the annotated
//! structures, and the signed area error (predicted - reference) / reference, the
//! segmentation analogue of under-diagnosis when negative), per attribute: each
//! group's n and means with stratified bootstrap intervals, the worst group, the gap
//! between the best and worst group's mean Dice with its interval and a permutation
//! p-value, Holm-adjusted across the attributes, and the skewed error ratio
//! max(1 - Dice) / min(1 - Dice) over the groups. Groups with fewer than
//! [`MIN_GROUP_SIZE`] images are listed, marked too small, and left out of the gap,
//! the test and the ratio. Cases without the attribute are counted, not grouped.

use crate::evaluate::Evaluation;
use radlens_eval::compare::holm;
use radlens_eval::groups::{compare_groups, unit_mean_ci};
use radlens_io::attributes as attr;
use radlens_io::dataset::DatasetKind;
use radlens_io::Sample;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Groups smaller than this are reported as too small to compare.
pub const MIN_GROUP_SIZE: usize = 20;
/// Bootstrap resamples and permutations of the tests.
pub const RESAMPLES: usize = 2000;
pub const PERMUTATIONS: usize = 10_000;

/// One group of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// Images.
    pub n: usize,
    /// Patients among them: the independent units the intervals and tests resample.
    #[serde(default)]
    pub patients: usize,
    pub too_small: bool,
    pub dice_mean: f64,
    pub dice_ci: [f64; 2],
    pub hd95_mean: Option<f64>,
    pub hd95_ci: Option<[f64; 2]>,
    /// Mean of (predicted - reference) / reference area over structures and images.
    pub signed_area_error_mean: f64,
    pub signed_area_error_ci: [f64; 2],
    /// Each image's mean Dice over the structures, in case order (the report's
    /// distribution plot).
    #[serde(default)]
    pub dice_values: Vec<f64>,
    /// Per confounding attribute, how many of the group's images have each value.
    pub confounders: BTreeMap<String, BTreeMap<String, usize>>,
}

impl GroupSummary {
    /// "20", "20 images of 14 patients", with " (too small)" where it is.
    pub fn size_label(&self) -> String {
        let patients = if self.patients > 0 && self.patients < self.n {
            format!(" images of {} patients", self.patients)
        } else {
            String::new()
        };
        let small = if self.too_small { " (too small)" } else { "" };
        format!("{}{patients}{small}", self.n)
    }
}

/// One attribute's groups and their comparison (over groups that are not too small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeSummary {
    pub groups: Vec<GroupSummary>,
    /// Images without this attribute.
    pub missing: usize,
    /// The group with the lowest mean Dice.
    pub worst_group: Option<String>,
    pub gap: Option<f64>,
    pub gap_ci: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    /// Holm-adjusted across the attributes with a test.
    pub p_holm: Option<f64>,
    pub skewed_error_ratio: Option<f64>,
}

/// `summary.json` of `seg subgroups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupSummary {
    pub model: String,
    pub dataset: String,
    pub images: usize,
    pub attributes: BTreeMap<String, AttributeSummary>,
    /// What the groups may be confounded with on this dataset.
    pub confounders: String,
    /// A SemanticGAN's test-time inversion steps (absent from summaries written before it
    /// was recorded).
    #[serde(default)]
    pub inversion_steps: Option<usize>,
    pub protocol: String,
}

pub const PROTOCOL: &str = "Per image: mean over annotated structures of Dice and HD95 of the mean prediction (seg eval protocol), and signed area error (predicted - reference) / reference. Per group: mean with a 95% percentile bootstrap interval (2000 resamples of the group's patients, so that a patient's several films move together; where no patient is recorded each image is its own patient). Gap = max - min of the group mean Dice over groups with n >= 20, its interval from the same stratified bootstrap, p-value from 10,000 permutations of the patients' group labels, Holm-adjusted across attributes. Skewed error ratio = max(1 - Dice) / min(1 - Dice) over those groups.";

/// The attributes a subgroup difference on data of `kind` may be confounded with,
/// and why.
pub fn confounders(kind: DatasetKind) -> (Vec<String>, &'static str) {
    match kind {
        DatasetKind::Jsrt | DatasetKind::JsrtClavicles => (
            vec![attr::NODULE.into()],
            "JSRT: nodule status (154 of 247 films have a nodule, which can distort the lung outline); every film is PA from one population.",
        ),
        DatasetKind::CovidCxr | DatasetKind::CovidCxrOpacity => (
            vec![attr::VIEW.into(), attr::FINDING.into()],
            "covid-cxr: projection (AP films of supine, sicker patients vs PA) and finding (opacities hide the lung border), both unevenly spread over sex and age; images come from many hospitals.",
        ),
        DatasetKind::Nnunet => (Vec::new(), "unknown for an nnU-Net folder"),
    }
}

/// One image: mean Dice, mean HD95 (if any structure has one), mean signed area error.
type Row = (f64, Option<f64>, f64);

/// Each case's independent unit: its patient where the dataset records one (covid-cxr
/// has patients filmed several times), else the case itself.
fn patient_units<'a>(cases: &[&'a Sample]) -> BTreeMap<&'a str, usize> {
    let mut patients: BTreeMap<String, usize> = BTreeMap::new();
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let unit = match c.attributes.group_of(attr::PATIENT_ID) {
                Some(p) => {
                    let next = cases.len() + patients.len();
                    *patients.entry(p).or_insert(next)
                }
                None => i,
            };
            (c.id.as_str(), unit)
        })
        .collect()
}

/// One image's per-structure values: Dice, HD95 where defined, signed area error.
#[derive(Default)]
struct Structures {
    dice: Vec<f64>,
    hd95: Vec<f64>,
    area_error: Vec<f64>,
}

/// Each image's [`Row`], by image id.
fn per_image(ev: &Evaluation) -> BTreeMap<&str, Row> {
    let mut acc: BTreeMap<&str, Structures> = BTreeMap::new();
    for r in &ev.classes {
        let e = acc.entry(r.id.as_str()).or_default();
        e.dice.push(r.dice);
        e.hd95.extend(r.hd95);
        if r.reference_px > 0 {
            e.area_error
                .push((r.predicted_px as f64 - r.reference_px as f64) / r.reference_px as f64);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    acc.into_iter()
        .map(|(id, s)| {
            let hd95 = (!s.hd95.is_empty()).then(|| mean(&s.hd95));
            (id, (mean(&s.dice), hd95, mean(&s.area_error)))
        })
        .collect()
}

/// The subgroup analysis of `ev` (an evaluation of `cases`) by each of `attributes`,
/// with each group's make-up by the `confounders` attributes.
pub fn analyse(
    ev: &Evaluation,
    cases: &[&Sample],
    attributes: &[String],
    confounders: &[String],
    seed: u64,
) -> BTreeMap<String, AttributeSummary> {
    let images = per_image(ev);
    let units = patient_units(cases);
    let mut out: BTreeMap<String, AttributeSummary> = attributes
        .iter()
        .enumerate()
        .map(|(ai, name)| {
            let seed = seed.wrapping_add(1000 * ai as u64);
            let a = analyse_attribute(&images, &units, cases, name, confounders, seed);
            (name.clone(), a)
        })
        .collect();
    let tested: Vec<String> = out
        .iter()
        .filter(|(_, a)| a.p_value.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    let p: Vec<f64> = tested
        .iter()
        .map(|n| out[n].p_value.unwrap_or(1.0))
        .collect();
    for (name, adj) in tested.iter().zip(holm(&p)) {
        if let Some(a) = out.get_mut(name) {
            a.p_holm = Some(adj);
        }
    }
    out
}

fn analyse_attribute(
    images: &BTreeMap<&str, Row>,
    units: &BTreeMap<&str, usize>,
    cases: &[&Sample],
    name: &str,
    confounders: &[String],
    seed: u64,
) -> AttributeSummary {
    // Each group's images with their unit.
    let mut groups: BTreeMap<String, Vec<(Row, usize)>> = BTreeMap::new();
    let mut mix: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> = BTreeMap::new();
    let mut missing = 0;
    for c in cases {
        let Some(v) = images.get(c.id.as_str()) else {
            continue;
        };
        let Some(g) = c.attributes.group_of(name) else {
            missing += 1;
            continue;
        };
        for conf in confounders {
            let value = c
                .attributes
                .group_of(conf)
                .unwrap_or_else(|| "unknown".into());
            let counts = mix
                .entry(g.clone())
                .or_default()
                .entry(conf.clone())
                .or_default();
            *counts.entry(value).or_default() += 1;
        }
        let unit = units.get(c.id.as_str()).copied().unwrap_or(usize::MAX);
        groups.entry(g).or_default().push((*v, unit));
    }
    let names: Vec<&String> = groups.keys().collect();
    let all: Vec<usize> = (0..names.len()).collect();
    // Each group's mean and interval: resampling the group's patients, which is the
    // stratified bootstrap's marginal for that group.
    let group_stat = |gi: usize, f: fn(&Row) -> Option<f64>, s: u64| {
        let (v, u): (Vec<f64>, Vec<usize>) = groups[names[gi]]
            .iter()
            .map(|(r, unit)| (f(r).unwrap_or(f64::NAN), *unit))
            .unzip();
        unit_mean_ci(&v, &u, RESAMPLES, seed.wrapping_add(s))
    };
    let summaries: Vec<GroupSummary> = all
        .iter()
        .map(|&gi| {
            let members = &groups[names[gi]];
            let n = members.len();
            let patients = members
                .iter()
                .map(|m| m.1)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let (dm, dci) = group_stat(gi, |r| Some(r.0), 0).unwrap_or((f64::NAN, [f64::NAN; 2]));
            let (am, aci) = group_stat(gi, |r| Some(r.2), 2).unwrap_or((f64::NAN, [f64::NAN; 2]));
            let hd = group_stat(gi, |r| r.1, 1);
            GroupSummary {
                group: names[gi].clone(),
                n,
                patients,
                too_small: n < MIN_GROUP_SIZE,
                dice_mean: dm,
                dice_ci: dci,
                hd95_mean: hd.map(|h| h.0),
                hd95_ci: hd.map(|h| h.1),
                signed_area_error_mean: am,
                signed_area_error_ci: aci,
                dice_values: members.iter().map(|m| m.0 .0).collect(),
                confounders: mix.remove(names[gi].as_str()).unwrap_or_default(),
            }
        })
        .collect();
    let big: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&gi| groups[names[gi]].len() >= MIN_GROUP_SIZE)
        .collect();
    let test = (big.len() >= 2)
        .then(|| {
            let (mut values, mut labels, mut unit_of) = (Vec::new(), Vec::new(), Vec::new());
            for (li, &gi) in big.iter().enumerate() {
                for (row, unit) in &groups[names[gi]] {
                    values.push(row.0);
                    labels.push(li);
                    unit_of.push(*unit);
                }
            }
            compare_groups(
                &values,
                &labels,
                &unit_of,
                big.len(),
                RESAMPLES,
                PERMUTATIONS,
                seed.wrapping_add(3),
            )
        })
        .flatten();
    let errors: Vec<f64> = big
        .iter()
        .map(|&gi| 1.0 - summaries[gi].dice_mean)
        .collect();
    let worst = big
        .iter()
        .min_by(|&&a, &&b| summaries[a].dice_mean.total_cmp(&summaries[b].dice_mean))
        .map(|&gi| summaries[gi].group.clone());
    let max_err = errors.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min_err = errors.iter().cloned().fold(f64::INFINITY, f64::min);
    AttributeSummary {
        groups: summaries,
        missing,
        worst_group: worst,
        gap: test.as_ref().map(|t| t.gap),
        gap_ci: test.as_ref().map(|t| t.gap_ci),
        p_value: test.as_ref().map(|t| t.p_value),
        p_holm: None,
        skewed_error_ratio: (errors.len() >= 2 && min_err > 0.0).then(|| max_err / min_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{ClassRow, Evaluation};
    use radlens_io::attributes::{AGE_BAND, AGE_YEARS, SEX};
    use radlens_io::dataset::LabelSource;
    use radlens_io::{Attributes, Sex};

    fn case(i: usize, sex: Option<Sex>, age: f64) -> Sample {
        let mut attributes = Attributes::default();
        if let Some(s) = sex {
            attributes.insert(SEX, s);
        }
        attributes.insert_number(AGE_YEARS, age);
        Sample {
            id: format!("c{i}"),
            image_path: "x.png".into(),
            labels: LabelSource::BinaryMasks(Vec::new()),
            attributes,
            spacing: None,
        }
    }

    fn row(i: usize, dice: f64, predicted_px: usize) -> ClassRow {
        ClassRow {
            id: format!("c{i}"),
            sex: None,
            age_years: None,
            view: None,
            class: "lung".into(),
            dice,
            iou: dice,
            hd95: Some(1.0),
            assd: None,
            distance_unit: "mm",
            predicted_px,
            reference_px: 100,
        }
    }

    /// 30 women at Dice 0.95 and 25 men at 0.90 (all over 60), 5 cases without a sex.
    #[test]
    fn groups_gap_ratio_and_small_cells() {
        let mut cases = Vec::new();
        let mut classes = Vec::new();
        for i in 0..60 {
            let (sex, dice, area) = match i {
                0..=29 => (Some(Sex::Female), 0.95 + (i % 2) as f64 * 0.002, 95),
                30..=54 => (Some(Sex::Male), 0.90 + (i % 2) as f64 * 0.002, 110),
                _ => (None, 0.5, 100),
            };
            cases.push(case(i, sex, if i < 10 { 35.0 } else { 65.0 }));
            classes.push(row(i, dice, area));
        }
        let ev = Evaluation {
            classes,
            images: Vec::new(),
            samples: 0,
        };
        let refs: Vec<&Sample> = cases.iter().collect();
        let out = analyse(
            &ev,
            &refs,
            &[SEX.into(), AGE_BAND.into()],
            &[AGE_BAND.into()],
            1,
        );
        let sex = &out[SEX];
        assert_eq!(sex.missing, 5);
        let names: Vec<(&str, usize)> =
            sex.groups.iter().map(|g| (g.group.as_str(), g.n)).collect();
        assert_eq!(names, [("female", 30), ("male", 25)]);
        assert!((sex.groups[0].dice_mean - 0.951).abs() < 1e-9);
        assert!((sex.groups[1].signed_area_error_mean - 0.10).abs() < 1e-9);
        assert!((sex.groups[0].signed_area_error_mean + 0.05).abs() < 1e-9);
        assert!(
            (sex.gap.unwrap() - (0.951 - 0.90096)).abs() < 1e-9,
            "{sex:?}"
        );
        assert_eq!(sex.worst_group.as_deref(), Some("male"));
        // error 0.09904 vs 0.049
        assert!((sex.skewed_error_ratio.unwrap() - 0.09904 / 0.049).abs() < 1e-9);
        // groups that never overlap: no permutation reaches the gap
        assert!(sex.p_value.unwrap() < 0.001);
        // the make-up of each group by the confounder: 10 of the women are under 40
        let women_age = &sex.groups[0].confounders[AGE_BAND];
        assert_eq!((women_age["<40"], women_age[">=60"]), (10, 20));
        // age: 10 under 40 (too small, listed, not compared), 50 at 60 or over: no test
        let age = &out[AGE_BAND];
        assert!(age
            .groups
            .iter()
            .any(|g| g.group == "<40" && g.too_small && g.n == 10));
        assert_eq!((age.gap, age.p_value, age.p_holm), (None, None, None));
        // Holm over the one tested attribute leaves its p-value
        assert_eq!(sex.p_holm, sex.p_value);
    }

    /// Each patient filmed twice with identical results is one unit: the group intervals
    /// and the test are those of one film per patient, and the label counts both.
    #[test]
    fn a_patients_films_are_resampled_together() {
        use radlens_io::attributes::PATIENT_ID;
        let evaluate = |films_per_patient: usize| {
            let (mut cases, mut classes) = (Vec::new(), Vec::new());
            for p in 0..44 {
                for f in 0..films_per_patient {
                    let i = p * films_per_patient + f;
                    let sex = if p < 22 { Sex::Female } else { Sex::Male };
                    let mut c = case(i, Some(sex), 50.0);
                    c.attributes.insert(PATIENT_ID, format!("p{p}"));
                    cases.push(c);
                    classes.push(row(i, 0.9 + 0.003 * (p % 9) as f64, 100 + p % 5));
                }
            }
            let ev = Evaluation {
                classes,
                images: Vec::new(),
                samples: 0,
            };
            let refs: Vec<&Sample> = cases.iter().collect();
            analyse(&ev, &refs, &[SEX.into()], &[], 7)
                .remove(SEX)
                .unwrap()
        };
        let (once, twice) = (evaluate(1), evaluate(2));
        assert_eq!((twice.gap_ci, twice.p_value), (once.gap_ci, once.p_value));
        for (t, o) in twice.groups.iter().zip(&once.groups) {
            assert_eq!((t.n, t.patients, o.n, o.patients), (44, 22, 22, 22));
            assert_eq!(
                (t.dice_ci, t.signed_area_error_ci),
                (o.dice_ci, o.signed_area_error_ci)
            );
        }
        assert_eq!(twice.groups[0].size_label(), "44 images of 22 patients");
        assert_eq!(once.groups[0].size_label(), "22");
    }
}

//! Deterministic, stratified train/validation/test splits stored as JSON, so
//! that every command of a run uses the same cases.

use crate::attributes;
use crate::dataset::Sample;
use crate::error::{IoError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::Path;

/// Which part of a split to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitPart {
    Train,
    /// Held out from training and from every choice made on validation (checkpoint,
    /// temperature): cases on which a calibration (conformal margins) can be fitted and
    /// stay exchangeable with the test cases.
    Calibration,
    Val,
    Test,
    /// Every case of the dataset (for out-of-distribution sets).
    All,
}

impl std::str::FromStr for SplitPart {
    type Err = IoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Self::Train),
            "calibration" => Ok(Self::Calibration),
            "val" | "validation" => Ok(Self::Val),
            "test" => Ok(Self::Test),
            "all" => Ok(Self::All),
            _ => Err(IoError::InvalidArgument(format!(
                "unknown split '{s}' (train, calibration, val, test or all)"
            ))),
        }
    }
}

impl std::fmt::Display for SplitPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Calibration => "calibration",
            Self::Val => "val",
            Self::Test => "test",
            Self::All => "all",
        })
    }
}

/// The stratum of a sample: its nodule status (JSRT), so that every part has the
/// dataset's share of nodule cases; samples that do not record it form one stratum.
/// Nodule cases are drawn first, which keeps the splits radlens has always drawn for a
/// seed (those of the shipped models).
fn stratum(s: &Sample) -> Reverse<Option<bool>> {
    Reverse(s.attributes.flag(attributes::NODULE))
}

/// Case ids per part, with how they were drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub dataset: String,
    pub seed: u64,
    /// Train and validation fractions; the rest is test.
    pub train_fraction: f64,
    pub val_fraction: f64,
    /// The part of `train_fraction` held out for calibration (0 in splits drawn without one).
    #[serde(default)]
    pub calibration_fraction: f64,
    pub train: Vec<String>,
    #[serde(default)]
    pub calibration: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

impl Split {
    /// Split samples per stratum (nodule status, where recorded): the patients of a
    /// stratum (a sample whose patient is not recorded is its own patient) sorted by id,
    /// shuffled with `seed` and cut by the fractions, so that all films of one patient
    /// land in the same part. Without patient ids this is a split of the sorted case ids.
    /// The calibration part is the last `calibration_fraction` of each stratum's training
    /// patients, so that validation and test are the parts drawn without one.
    pub fn stratified(
        dataset: &str,
        samples: &[Sample],
        seed: u64,
        train_fraction: f64,
        val_fraction: f64,
        calibration_fraction: f64,
    ) -> Self {
        // stratum -> patient key -> case ids
        let mut strata: BTreeMap<_, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for s in samples {
            let patient = match s.attributes.category(attributes::PATIENT_ID) {
                Some(p) => format!("patient {p}"),
                None => s.id.clone(),
            };
            strata
                .entry(stratum(s))
                .or_default()
                .entry(patient)
                .or_default()
                .push(s.id.clone());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut split = Split {
            dataset: dataset.to_string(),
            seed,
            train_fraction,
            val_fraction,
            calibration_fraction,
            train: vec![],
            calibration: vec![],
            val: vec![],
            test: vec![],
        };
        for patients in strata.values() {
            let mut groups: Vec<&Vec<String>> = patients.values().collect();
            groups.shuffle(&mut rng);
            let n = groups.len() as f64;
            let n_train = (n * train_fraction).round() as usize;
            let n_val = ((n * val_fraction).round() as usize).min(groups.len() - n_train);
            let n_fit = n_train - ((n * calibration_fraction).round() as usize).min(n_train);
            let cut = |g: &[&Vec<String>]| -> Vec<String> {
                g.iter().flat_map(|ids| ids.iter().cloned()).collect()
            };
            split.train.extend(cut(&groups[..n_fit]));
            split.calibration.extend(cut(&groups[n_fit..n_train]));
            split.val.extend(cut(&groups[n_train..n_train + n_val]));
            split.test.extend(cut(&groups[n_train + n_val..]));
        }
        for part in [
            &mut split.train,
            &mut split.calibration,
            &mut split.val,
            &mut split.test,
        ] {
            part.sort();
        }
        split
    }

    /// The ids of one part (`All` is every part).
    pub fn ids(&self, part: SplitPart) -> Vec<String> {
        match part {
            SplitPart::Train => self.train.clone(),
            SplitPart::Calibration => self.calibration.clone(),
            SplitPart::Val => self.val.clone(),
            SplitPart::Test => self.test.clone(),
            SplitPart::All => [
                &self.train[..],
                &self.calibration[..],
                &self.val[..],
                &self.test[..],
            ]
            .concat(),
        }
    }

    /// Read a split file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::fs(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| IoError::invalid(path, format!("not a radlens split file: {e}")))
    }

    /// Write the split file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        Ok(radlens_core::results::write_json(path, self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::LabelSource;

    fn sample(id: &str, nodule: bool) -> Sample {
        let mut a = crate::Attributes::default();
        a.insert(attributes::NODULE, nodule);
        Sample {
            id: id.into(),
            image_path: id.into(),
            labels: LabelSource::LabelPng(id.into()),
            attributes: a,
            spacing: None,
        }
    }

    #[test]
    fn stratified_deterministic_and_round_trips() {
        let samples: Vec<_> = (0..20)
            .map(|i| sample(&format!("n{i:02}"), true))
            .chain((0..10).map(|i| sample(&format!("c{i:02}"), false)))
            .collect();
        let a = Split::stratified("x", &samples, 7, 0.7, 0.1, 0.0);
        let b = Split::stratified("x", &samples, 7, 0.7, 0.1, 0.0);
        assert_eq!(a, b);
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (21, 3, 6));
        assert_eq!(a.test.iter().filter(|i| i.starts_with('n')).count(), 4);
        assert_eq!(a.ids(SplitPart::All).len(), 30);
        let c = Split::stratified("x", &samples, 8, 0.7, 0.1, 0.0);
        assert_ne!(a.train, c.train);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.json");
        a.write(&p).unwrap();
        assert_eq!(Split::read(&p).unwrap(), a);
    }

    #[test]
    fn calibration_is_carved_from_training_and_leaves_val_and_test_alone() {
        let samples: Vec<_> = (0..20)
            .map(|i| sample(&format!("n{i:02}"), true))
            .chain((0..10).map(|i| sample(&format!("c{i:02}"), false)))
            .collect();
        let plain = Split::stratified("x", &samples, 7, 0.7, 0.1, 0.0);
        let cal = Split::stratified("x", &samples, 7, 0.7, 0.1, 0.2);
        assert!(plain.calibration.is_empty());
        // round(0.2 * 20) + round(0.2 * 10) cases, each from the training part
        assert_eq!(cal.calibration.len(), 4 + 2);
        assert_eq!((&cal.val, &cal.test), (&plain.val, &plain.test));
        let mut fit_and_cal = [cal.train.clone(), cal.calibration.clone()].concat();
        fit_and_cal.sort();
        assert_eq!(fit_and_cal, plain.train);
        assert_eq!(cal.ids(SplitPart::Calibration), cal.calibration);
        assert_eq!(cal.ids(SplitPart::All).len(), 30);
        for part in [SplitPart::Calibration, SplitPart::Val, SplitPart::All] {
            assert_eq!(part.to_string().parse::<SplitPart>().unwrap(), part);
        }
    }

    #[test]
    fn films_of_one_patient_stay_in_one_part() {
        let samples: Vec<_> = (0..40)
            .map(|i| {
                let mut s = sample(&format!("f{i:02}"), false);
                s.attributes = crate::Attributes::default();
                s.attributes
                    .insert(attributes::PATIENT_ID, format!("{}", i / 3).as_str());
                s
            })
            .collect();
        let split = Split::stratified("x", &samples, 3, 0.7, 0.1, 0.0);
        let part_of = |id: &str| {
            [&split.train, &split.val, &split.test]
                .iter()
                .position(|p| p.iter().any(|i| i == id))
                .unwrap()
        };
        for s in &samples {
            let patient = s.attributes.category(attributes::PATIENT_ID).unwrap();
            for t in &samples {
                if t.attributes.category(attributes::PATIENT_ID) == Some(patient) {
                    assert_eq!(part_of(&s.id), part_of(&t.id), "{} / {}", s.id, t.id);
                }
            }
        }
        // 14 patients: 10 train, 1 validation, 3 test
        assert_eq!(split.ids(SplitPart::All).len(), 40);
        assert!(split.train.len() >= 28 && !split.val.is_empty() && !split.test.is_empty());
    }

    #[test]
    fn parts_parse_and_unknown_ones_are_named() {
        assert_eq!("validation".parse::<SplitPart>().unwrap(), SplitPart::Val);
        let e = "holdout".parse::<SplitPart>().unwrap_err();
        assert!(
            matches!(&e, IoError::InvalidArgument(m) if m.contains("'holdout'")),
            "{e}"
        );
    }
}

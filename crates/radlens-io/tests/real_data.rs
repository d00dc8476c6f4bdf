//! Loaders checked against the real public files in `../shared/data`.

use radlens_io::attributes::{self as attr, AttributeValue};
use radlens_io::split::Split;
use radlens_io::{Attributes, DatasetSpec, Sample, Sex};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var_os("RADLENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn spec(kind: &str, dir: &str) -> DatasetSpec {
    format!("{kind}:{}", shared().join("data").join(dir).display())
        .parse()
        .unwrap()
}

/// How many samples fall in each group of attribute `name` (unrecorded ones under "").
fn counts(samples: &[Sample], name: &str) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for s in samples {
        *c.entry(s.attributes.group_of(name).unwrap_or_default())
            .or_default() += 1;
    }
    c
}

fn expect(groups: &[(&str, usize)]) -> BTreeMap<String, usize> {
    groups.iter().map(|&(g, n)| (g.to_string(), n)).collect()
}

#[test]
fn jsrt_counts_clinical_records_and_masks() {
    let ds = spec("jsrt", "jsrt").open().unwrap();
    let samples = &ds.samples;
    assert_eq!(samples.len(), 247);
    // Counts from the two clinical tables: 154 nodule cases (100 malignant, 54 benign),
    // 119 men and 128 women, two ages written '?'.
    assert_eq!(
        counts(samples, attr::NODULE),
        expect(&[("no", 93), ("yes", 154)])
    );
    assert_eq!(
        counts(samples, attr::NODULE_MALIGNANCY),
        expect(&[("", 93), ("benign", 54), ("malignant", 100)])
    );
    assert_eq!(
        counts(samples, attr::SEX),
        expect(&[("female", 128), ("male", 119)])
    );
    assert_eq!(
        counts(samples, attr::AGE_BAND),
        expect(&[("", 2), ("40-59", 92), ("<40", 28), (">=60", 125)])
    );
    assert_eq!(
        counts(samples, attr::NODULE_SUBTLETY),
        expect(&[
            ("", 93),
            ("1", 25),
            ("2", 29),
            ("3", 50),
            ("4", 38),
            ("5", 12)
        ])
    );
    assert_eq!(counts(samples, attr::VIEW), expect(&[("PA", 247)]));
    // Every nodule case has a side, a location and a diagnosis.
    for name in [attr::NODULE_SIDE, attr::NODULE_LOCATION, attr::DIAGNOSIS] {
        assert_eq!(counts(samples, name)[""], 93, "{name}");
    }

    // JPCLN001: 53-year-old man, obvious (5) 15 mm malignant nodule in the left upper lobe.
    let first = &samples[0];
    assert_eq!(first.id, "JPCLN001");
    let a = &first.attributes;
    assert_eq!(
        (a.sex(), a.age_years(), a.view()),
        (Some(Sex::Male), Some(53.0), Some("PA"))
    );
    assert_eq!(a.flag(attr::NODULE), Some(true));
    assert_eq!(a.number(attr::NODULE_SUBTLETY), Some(5.0));
    assert_eq!(a.number(attr::NODULE_SIZE_MM), Some(15.0));
    assert_eq!(
        (a.number(attr::NODULE_X_2048), a.number(attr::NODULE_Y_2048)),
        (Some(1634.0), Some(692.0))
    );
    assert_eq!(a.category(attr::NODULE_MALIGNANCY), Some("malignant"));
    assert_eq!(a.category(attr::NODULE_LOCATION), Some("l.upper lobe"));
    assert_eq!(a.category(attr::NODULE_SIDE), Some("left"));
    assert_eq!(a.category(attr::DIAGNOSIS), Some("lung cancer"));
    assert_eq!(a.iter().count(), 12);
    // A non-nodule case carries only the demographics, the view and its nodule flag.
    let non = samples.iter().find(|s| s.id == "JPCNN001").unwrap();
    let names: Vec<_> = non.attributes.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [attr::AGE_YEARS, attr::NODULE, attr::SEX, attr::VIEW]
    );

    let img = first.load_image().unwrap();
    assert_eq!((img.width, img.height), (1024, 1024));
    assert_eq!(img.spacing.unwrap().row_mm, 0.35);
    let lab = first.load_labels((1024, 1024)).unwrap();
    let count = |c: u8| lab.labels.iter().filter(|&&l| l == c).count();
    // the patient's right lung is on the image's left
    let cx = |c: u8| {
        lab.labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == c)
            .map(|(i, _)| i % 1024)
            .sum::<usize>() as f64
            / count(c) as f64
    };
    assert!(count(1) > 10_000 && count(2) > 10_000 && count(3) > 10_000);
    assert!(cx(1) < 512.0 && cx(2) > 512.0);
    let e = first.load_labels((512, 512)).unwrap_err().to_string();
    assert!(e.contains("1024x1024"), "{e}");
}

#[test]
fn jsrt_clavicles_are_painted_over_the_lungs() {
    let ds = spec("jsrt+clavicles", "jsrt").open().unwrap();
    assert_eq!(ds.classes.len(), 6);
    let s = &ds.samples[0];
    let lab = s.load_labels((1024, 1024)).unwrap();
    for c in 1..=5u8 {
        assert!(lab.labels.contains(&c), "class {c} empty");
    }
}

#[test]
fn jsrt_split_is_stratified_and_reproduces_the_shipped_models_split() {
    let ds = spec("jsrt", "jsrt").open().unwrap();
    let s = Split::stratified("jsrt:../shared/data/jsrt", &ds.samples, 0, 0.7, 0.1, 0.0);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 247);
    let nod = |ids: &[String]| {
        ids.iter().filter(|i| i.starts_with("JPCLN")).count() as f64 / ids.len() as f64
    };
    assert!((nod(&s.test) - 154.0 / 247.0).abs() < 0.05);
    // Each stratum is cut on its own: round(0.7 * 154) + round(0.7 * 93) training cases.
    assert_eq!(s.train.len(), 108 + 65);
    // The shipped model was trained on the split drawn with the same seed.
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    assert_eq!(s, Split::read(&models.join("jsrt-ssn/split.json")).unwrap());
    // The measurement model's: round(0.1 * 154) + round(0.1 * 93) of those training cases
    // held out for calibration, validation and test unchanged.
    let c = Split::stratified("jsrt:../shared/data/jsrt", &ds.samples, 0, 0.7, 0.1, 0.1);
    assert_eq!((c.train.len(), c.calibration.len()), (173 - 24, 15 + 9));
    assert_eq!((&c.val, &c.test), (&s.val, &s.test));
    assert_eq!(
        c,
        Split::read(&models.join("jsrt-ssn-measure/split.json")).unwrap()
    );
}

#[test]
fn covid_cxr_counts_and_pasted_masks() {
    let ds = spec("covid-cxr", "covid-cxr").open().unwrap();
    assert_eq!(ds.samples.len(), 70);
    assert_eq!(
        ds.classes.names,
        vec!["background", "right_lung", "left_lung", "cardiomediastinum"]
    );
    // metadata.csv joined on filename: its counts of recorded values.
    let samples = &ds.samples;
    assert_eq!(
        counts(samples, attr::SEX),
        expect(&[("", 7), ("female", 20), ("male", 43)])
    );
    assert_eq!(
        counts(samples, attr::VIEW),
        expect(&[("AP", 6), ("PA", 64)])
    );
    assert_eq!(counts(samples, attr::FINDING)["COVID-19"], 40);
    assert_eq!(
        counts(samples, attr::SURVIVED),
        expect(&[("", 47), ("no", 6), ("yes", 17)])
    );
    assert_eq!(counts(samples, attr::AGE_YEARS)[""], 13);
    assert_eq!(counts(samples, attr::PATIENT_ID).len(), 54);
    assert_eq!(counts(samples, attr::NODULE), expect(&[("", 70)]));
    // The first image by name: patient 39, a 50-year-old man two days in, 38 °C, Italy.
    let a = &samples[0].attributes;
    assert_eq!(samples[0].id, "1312A392-67A3-4EBF-9319-810CF6DA5EF6.jpeg");
    let expected: Attributes = serde_json::from_str(
        r#"{"patient_id": "39", "offset_days": 2, "sex": "male", "age_years": 50,
            "finding": "COVID-19", "temperature_c": 38, "po2_saturation": 93, "view": "PA",
            "modality": "X-ray", "date": "2020", "site": "Italy"}"#,
    )
    .unwrap();
    assert_eq!(a, &expected);
    assert_eq!(a.get(attr::AGE_YEARS), Some(&AttributeValue::Number(50.0)));
    let s = &ds.samples[0];
    let img = s.load_image().unwrap();
    let lab = s.load_labels((img.width, img.height)).unwrap();
    for c in 1..=3u8 {
        assert!(lab.labels.contains(&c), "class {c} empty in {}", s.id);
    }
}

#[test]
fn covid_cxr_opacity_is_painted_over_the_lungs_and_split_by_patient() {
    let ds = spec("covid-cxr+opacity", "covid-cxr").open().unwrap();
    assert_eq!(ds.samples.len(), 70);
    assert_eq!(ds.classes.id("opacity"), Some(4));
    let with_opacity = ds
        .samples
        .iter()
        .take(10)
        .filter(|s| {
            {
                let i = s.load_image().unwrap();
                s.load_labels((i.width, i.height))
            }
            .unwrap()
            .labels
            .contains(&4)
        })
        .count();
    assert!(with_opacity > 0, "no opacity in the first 10 films");
    let s = Split::stratified("covid-cxr+opacity", &ds.samples, 0, 0.7, 0.1, 0.0);
    let patient = |id: &String| {
        let a = &ds.samples.iter().find(|s| &s.id == id).unwrap().attributes;
        a.category(radlens_io::attributes::PATIENT_ID)
            .map(str::to_string)
    };
    for test_id in &s.test {
        assert!(
            s.train
                .iter()
                .all(|t| patient(t) != patient(test_id) || patient(t).is_none()),
            "{test_id} shares its patient with a training film"
        );
    }
}

//! Loaders checked against the real public files in `../shared/data`.

use radlens_io::dataset::jsrt::{Malignancy, Side};
use radlens_io::split::Split;
use radlens_io::{DatasetSpec, Sex};
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

#[test]
fn jsrt_counts_clinical_records_and_masks() {
    let ds = spec("jsrt", "jsrt").open().unwrap();
    assert_eq!(ds.samples.len(), 247);
    let nodule = ds.samples.iter().filter(|s| s.stratum == "nodule").count();
    assert_eq!(nodule, 154);
    // every case has its clinical record
    assert!(ds.samples.iter().all(|s| s.jsrt.is_some()));
    let with_nodule: Vec<_> = ds
        .samples
        .iter()
        .filter_map(|s| s.jsrt.as_ref()?.nodule.as_ref())
        .collect();
    assert_eq!(with_nodule.len(), 154);
    let malignant = with_nodule
        .iter()
        .filter(|n| n.malignancy == Malignancy::Malignant)
        .count();
    assert_eq!(malignant, 100); // JSRT: 100 malignant, 54 benign nodules
    assert!(with_nodule
        .iter()
        .all(|n| n.side.is_some() && (1..=5).contains(&n.subtlety)));
    let unknown_age = ds
        .samples
        .iter()
        .filter(|s| s.meta.age_years.is_none())
        .count();
    assert!(unknown_age > 0 && unknown_age < 5, "{unknown_age}");
    assert!(ds.samples.iter().all(|s| s.meta.sex.is_some()));
    let first = &ds.samples[0];
    assert_eq!(first.id, "JPCLN001");
    let rec = first.jsrt.as_ref().unwrap();
    assert_eq!((rec.age_years, rec.sex), (Some(53), Some(Sex::Male)));
    let n = rec.nodule.as_ref().unwrap();
    assert_eq!(
        (n.location.as_str(), n.side, n.diagnosis.as_str()),
        ("l.upper lobe", Some(Side::Left), "lung cancer")
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
fn jsrt_split_is_stratified() {
    let ds = spec("jsrt", "jsrt").open().unwrap();
    let s = Split::stratified("jsrt", &ds.samples, 0, 0.7, 0.1);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 247);
    let nod = |ids: &[String]| {
        ids.iter().filter(|i| i.starts_with("JPCLN")).count() as f64 / ids.len() as f64
    };
    assert!((nod(&s.test) - 154.0 / 247.0).abs() < 0.05);
}

#[test]
fn covid_cxr_counts_and_pasted_masks() {
    let ds = spec("covid-cxr", "covid-cxr").open().unwrap();
    assert_eq!(ds.samples.len(), 70);
    assert_eq!(
        ds.classes.names,
        vec!["background", "right_lung", "left_lung", "cardiomediastinum"]
    );
    // metadata joined on filename: most images have a sex recorded
    assert!(ds.samples.iter().filter(|s| s.meta.sex.is_some()).count() > 50);
    let s = &ds.samples[0];
    let img = s.load_image().unwrap();
    let lab = s.load_labels((img.width, img.height)).unwrap();
    for c in 1..=3u8 {
        assert!(lab.labels.contains(&c), "class {c} empty in {}", s.id);
    }
}

#[test]
fn iu_xray_reports_match_the_csv() {
    let dir = shared().join("data").join("iu-xray");
    let reports = radlens_io::reports::read_iu_xray(&dir).unwrap();
    // 3,451 rows, 21 of which have neither findings nor impression.
    assert_eq!(reports.len(), 3430);
    assert_eq!(reports[0].uid, "1");
    assert!(reports[0]
        .text()
        .starts_with("The cardiac silhouette and mediastinum size"));
    assert!(reports[0].text().ends_with("Normal chest x-XXXX."));
    // Report 3 has no findings: its text is the impression alone.
    let r3 = reports.iter().find(|r| r.uid == "3").unwrap();
    assert!(r3.text().starts_with("No displaced rib fractures"));
}

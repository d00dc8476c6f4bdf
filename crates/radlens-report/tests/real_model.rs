//! The engine on real films with the shipped JSRT model: measurements against the SCR
//! reference masks, plausibility on images the model cannot handle, and draft, review
//! and search end to end.

use radlens_io::XrayImage;
use radlens_report::analysis::{analyse, analyse_image, Analysis, Models};
use radlens_report::draft::{Draft, DraftInputs, DraftSentence};
use radlens_report::measure::conformal::{IntervalCalibration, Margin, METHOD};
use radlens_report::measure::geometry::{AnatomyIds, MaskMeasures};
use radlens_report::measure::SampleConfig;
use radlens_report::phrasing::PhraseBank;
use radlens_report::{Labeler, Observation};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    std::env::var_os("RADLENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

fn models() -> Models {
    let cfg = SampleConfig {
        samples: 8,
        temperature: None,
        seed: 0,
    };
    Models::load(&root().join("models/jsrt-ssn"), None, cfg).unwrap()
}

/// The draft's heart-size sentence.
fn heart_sentence(d: &Draft) -> &DraftSentence {
    d.sentences
        .iter()
        .find(|s| s.observation == Some(Observation::Cardiomegaly))
        .unwrap()
}

/// The draft's own text, reviewed against the same image, raises no contradiction.
fn assert_no_contradiction(a: &Analysis, d: &Draft, labeler: &Labeler) {
    let r = radlens_report::review::review(a, &d.text(), labeler).unwrap();
    assert!(
        r.flags
            .iter()
            .all(|f| f.kind != radlens_report::review::FlagKind::Contradiction),
        "{:?}",
        r.flags
    );
}

fn jsrt(case: &str) -> PathBuf {
    shared().join(format!("data/jsrt/images/{case}.png"))
}

#[test]
fn ctr_of_a_jsrt_film_matches_its_scr_masks() {
    let m = models();
    let a = analyse(&m, &jsrt("JPCNN010")).unwrap();
    assert!(
        a.measurements.plausibility.plausible,
        "{:?}",
        a.measurements.plausibility
    );
    // the reference CTR from the SCR masks of the same film
    let ds: radlens_io::DatasetSpec = format!("jsrt:{}", shared().join("data/jsrt").display())
        .parse()
        .unwrap();
    let ds = ds.open().unwrap();
    let s = ds.samples.iter().find(|s| s.id == "JPCNN010").unwrap();
    let lab = s.load_labels((1024, 1024)).unwrap();
    let ids = AnatomyIds {
        right_lung: 1,
        left_lung: 2,
        heart: Some(3),
        opacity: None,
    };
    let reference = MaskMeasures::of(&lab, ids).ctr().unwrap();
    let ctr = a.measurements.ctr.unwrap();
    assert!(
        (ctr.value - reference).abs() < 0.03,
        "CTR {ctr:?} vs reference {reference}"
    );
    assert!(ctr.low <= ctr.value && ctr.value <= ctr.high);
    // a PNG carries no pixel spacing, so areas stay in pixels rather than guessed mm²
    assert_eq!(a.measurements.area_unit, "px");
}

fn transposed(img: &XrayImage) -> XrayImage {
    let (w, h) = (img.width, img.height);
    let mut p = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            p[x * h + y] = img.pixels[y * w + x];
        }
    }
    XrayImage {
        width: h,
        height: w,
        pixels: p,
        spacing: img.spacing,
    }
}

#[test]
fn images_the_model_cannot_handle_are_named_not_measured() {
    let m = models();
    let img = radlens_io::image::read_image(&jsrt("JPCNN010")).unwrap();
    // a film turned on its side: the lungs stack vertically
    let turned = analyse_image(&m, Path::new("turned.png"), transposed(&img)).unwrap();
    assert!(!turned.measurements.plausibility.plausible);
    assert!(turned.measurements.ctr.is_none());
    // seeded noise: no chest at all
    let mut state = 12345u64;
    let noise: Vec<f32> = (0..256 * 256)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let a = analyse_image(
        &m,
        Path::new("noise.png"),
        XrayImage::new(256, 256, noise).unwrap(),
    )
    .unwrap();
    assert!(
        !a.measurements.plausibility.plausible,
        "{:?}",
        a.measurements
    );
    let labeler = Labeler::builtin().unwrap();
    let r = radlens_report::review::review(&a, "Heart size is normal.", &labeler).unwrap();
    assert!(r.flags.is_empty() && r.not_assessable.is_some());
    let d = radlens_report::draft::draft(&a, DraftInputs::default(), &labeler).unwrap();
    assert!(d.not_assessable.is_some());
    assert!(
        d.sentences.iter().all(|s| s.observation.is_none()),
        "no invented findings"
    );
    assert!(!radlens_report::search::search(&a, "heart").found);
    // radlens' own draft is a report its review reads (the sweep reviews the draft of a
    // film without notes); it once refused a draft of a lateral-looking film as not English
    for problem in [&a, &turned] {
        let d = radlens_report::draft::draft(problem, DraftInputs::default(), &labeler).unwrap();
        let r = radlens_report::review::review(problem, &d.text(), &labeler).unwrap();
        assert!(r.flags.is_empty() && r.not_assessable.is_some());
    }
}

#[test]
fn draft_review_and_search_end_to_end() {
    let m = models();
    let labeler = Labeler::builtin().unwrap();
    let a = analyse(&m, &jsrt("JPCLN001")).unwrap();
    let inputs = DraftInputs {
        indication: Some("cough"),
        ..DraftInputs::default()
    };
    let d = radlens_report::draft::draft(&a, inputs, &labeler).unwrap();
    let heart = heart_sentence(&d);
    assert_eq!(heart.evidence[0].measurement, "ctr");
    assert!(d.grounded().contains("<obj>") && d.grounded().contains("<box><x"));
    assert!(d.text().starts_with("[AI DRAFT"));
    // the draft's own text, reviewed, raises no contradiction
    assert_no_contradiction(&a, &d, &labeler);
    for q in [
        "left costophrenic angle",
        "right apex",
        "hila",
        "retrocardiac region",
        "mediastinum",
        "heart",
        "lungs",
        "Pleural Effusion",
    ] {
        let s = radlens_report::search::search(&a, q);
        assert!(s.found && s.area_pixels > 0, "{q}: {}", s.note);
    }
    let left = radlens_report::search::search(&a, "left costophrenic angle")
        .region_box
        .unwrap();
    let right = radlens_report::search::search(&a, "right costophrenic angle")
        .region_box
        .unwrap();
    assert!(
        left.pixels.x_min > right.pixels.x_max,
        "the patient's left is on the image's right"
    );
    let unknown = radlens_report::search::search(&a, "spleen");
    assert!(!unknown.found && unknown.note.contains("can search for"));
}

#[test]
fn conformal_margins_widen_the_intervals_they_were_calibrated_for() {
    let mut m = models();
    let raw = analyse(&m, &jsrt("JPCNN010")).unwrap().measurements;
    assert!(
        raw.conformal.is_none(),
        "8 samples: no stored calibration holds"
    );
    let margin = |margin| {
        Some(Margin {
            margin,
            cases: 24,
            raw_coverage: 0.4,
        })
    };
    let cal = IntervalCalibration {
        method: METHOD.into(),
        coverage: 0.9,
        dataset: "jsrt:test".into(),
        split: radlens_io::split::SplitPart::Calibration,
        temperature: m.anatomy.predictor.temperature,
        samples: 8,
        seed: 0,
        ctr: margin(0.05),
        lung_ratio: margin(0.1),
    };
    m.anatomy.intervals = Some(cal.clone());
    let wide = analyse(&m, &jsrt("JPCNN010")).unwrap().measurements;
    let (r, w) = (raw.ctr.unwrap(), wide.ctr.unwrap());
    assert_eq!(w.value, r.value);
    assert!((w.low - (r.low - 0.05)).abs() < 1e-12 && (w.high - (r.high + 0.05)).abs() < 1e-12);
    let (r, w) = (raw.lung_ratio.unwrap(), wide.lung_ratio.unwrap());
    assert!((w.high - w.low - (r.high - r.low) - 0.2).abs() < 1e-12);
    assert_eq!(wide.conformal.unwrap().ctr, Some(0.05));
    // calibrated at another temperature: the raw interval, said so
    m.anatomy.intervals = Some(IntervalCalibration {
        temperature: 1.0,
        ..cal
    });
    let other = analyse(&m, &jsrt("JPCNN010")).unwrap().measurements;
    assert!(other.conformal.is_none());
    assert_eq!(other.ctr, raw.ctr);
}

#[test]
fn draft_findings_are_worded_from_real_iu_sentences() {
    let labeler = Labeler::builtin().unwrap();
    let records = radlens_report::read_iu_records(&shared().join("data/iu-xray")).unwrap();
    // a slice of the corpus keeps the test to seconds; the CLI embeds the training part
    let records = &records[..300];
    let encoder =
        radlens_lm::embed::SentenceEncoder::load(&radlens_testdata::minilm_dir()).unwrap();
    let bank =
        PhraseBank::build(records, &labeler, encoder, &radlens_report::draft::STATED).unwrap();
    assert!(bank.len() > 10, "{} sentences", bank.len());
    let a = analyse(&models(), &jsrt("JPCLN001")).unwrap();
    let inputs = DraftInputs {
        phrases: Some(&bank),
        ..DraftInputs::default()
    };
    let d = radlens_report::draft::draft(&a, inputs, &labeler).unwrap();
    let heart = heart_sentence(&d);
    let ctr = heart.evidence[0].interval;
    let p = heart.phrasing.as_ref().expect("heart size is phrased");
    // a real sentence of the report it names, stating the same claim as the measurement
    let source = records.iter().find(|r| r.uid == p.uid).unwrap();
    assert!(source.document().contains(&p.sentence), "{p:?}");
    let said = labeler
        .mentions(&p.sentence)
        .iter()
        .map(|m| m.status)
        .collect::<Vec<_>>();
    let expected = if ctr.side_of(0.5) == Some(true) {
        radlens_report::Status::Positive
    } else {
        radlens_report::Status::Negative
    };
    assert!(ctr.side_of(0.5).is_some(), "JPCLN001's CTR is clear of 0.5");
    assert_eq!(said, vec![expected], "{}", p.sentence);
    assert!(p.similarity > 0.5 && p.candidates >= 1, "{p:?}");
    // the numbers stay radlens' own, and the evidence with them
    assert!(
        heart.text.starts_with(p.sentence.trim_end_matches('.'))
            && heart.text.contains(&format!("CTR {:.2}", ctr.value)),
        "{}",
        heart.text
    );
    assert_eq!(heart.evidence[0].measurement, "ctr");
    assert_no_contradiction(&a, &d, &labeler);
}

#[test]
fn sweep_runs_every_command_on_a_patients_films() {
    let dir = shared().join("data/covid-cxr");
    let spec: radlens_io::DatasetSpec = format!("covid-cxr:{}", dir.display()).parse().unwrap();
    let mut ds = spec.open().unwrap();
    // patient 2: four films days apart (the full dataset is `radlens report sweep`)
    ds.samples
        .retain(|s| s.attributes.category(radlens_io::attributes::PATIENT_ID) == Some("2"));
    let n = ds.samples.len();
    assert_eq!(n, 4);
    let labeler = Labeler::builtin().unwrap();
    // with the measurement and opacity models the CLI loads by default
    let cfg = SampleConfig {
        samples: 4,
        temperature: None,
        seed: 0,
    };
    let m = Models::load(
        &root().join("models/jsrt-ssn-measure"),
        Some(&root().join("models/covid-cxr-opacity")),
        cfg,
    )
    .unwrap();
    let a = radlens_report::history::analyse_sample(&m, &ds.samples[0]).unwrap();
    let op = a.measurements.opacity.expect("opacity extent is measured");
    for i in [op.right, op.left] {
        assert!((0.0..=1.0).contains(&i.value) && i.low <= i.value && i.value <= i.high);
    }
    assert!(radlens_report::search::search(&a, "opacity").found);
    // an uncertain finding is never summed up as "no abnormality"
    let d = radlens_report::draft::draft(&a, DraftInputs::default(), &labeler).unwrap();
    let uncertain = d
        .sentences
        .iter()
        .any(|s| s.confidence == radlens_report::draft::Confidence::Uncertain);
    let impression = &d.sentences.last().unwrap().text;
    assert!(
        !(uncertain && impression.starts_with("No abnormality among")),
        "{impression}"
    );
    let s = radlens_report::sweep::sweep(
        &m,
        &ds,
        &dir,
        &labeler,
        None,
        &radlens_core::observe::Silent,
    );
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!((s.images, s.patients, s.analysed), (n, 1, n));
    assert_eq!((s.drafts, s.drafts_with_prior, s.reviews), (n, n - 1, n));
    let q = radlens_report::sweep::QUERIES.len();
    assert_eq!(s.searches, q * n);
    // the unknown query ("spleen") is answered with the list on every film
    assert_eq!(s.searches_explained, n);
    assert_eq!((s.histories, s.history_intervals), (1, n - 1));
    // patient 2's films all carry clinical notes, which are reviewed
    assert_eq!(s.reviews_of_notes + s.notes_refused.len(), n);
    // every plausible film states heart size and opacity
    let plausible = n - s.not_assessable.len();
    assert!(s.draft_finding_sentences >= 2 * plausible, "{s:?}");
}

//! Training and evaluation on real JSRT cases from `../shared/data`, seen through the
//! events they report.

use candle_core::Device;
use radlens_io::split::{Split, SplitPart};
use radlens_io::{ClassSchema, DatasetSpec};
use radlens_seg::calibrate::score_temperatures;
use radlens_seg::checkpoint::{load_model, SegRun};
use radlens_seg::config::ConvBackend;
use radlens_seg::evaluate::{choose_cases, evaluate};
use radlens_seg::train::{train, TrainRequest};
use radlens_seg::{
    EvalEvent, HeadConfig, ModelConfig, NormKind, Predictor, TrainConfig, TrainEvent,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Collects every event it observes.
struct Recorder<E>(Mutex<Vec<E>>);

impl<E: Clone + Send> radlens_core::Observer<E> for Recorder<E> {
    fn observe(&self, event: &E) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl<E> Recorder<E> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }
    fn take(&self) -> Vec<E> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[test]
fn training_reports_cases_steps_and_epochs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let split_file = dir.path().join("my_split.json");
    Split {
        dataset: "jsrt".into(),
        seed: 0,
        train_fraction: 0.6,
        val_fraction: 0.2,
        calibration_fraction: 0.0,
        train: ids(&["JPCLN001", "JPCLN002", "JPCNN001"]),
        calibration: vec![],
        val: ids(&["JPCNN002"]),
        test: ids(&["JPCNN003"]),
    }
    .write(&split_file)
    .unwrap();
    let run = dir.path().join("run");
    let request = |resume, epochs| TrainRequest {
        dataset: spec("jsrt", "jsrt"),
        out: run.clone(),
        model: ModelConfig {
            classes: ClassSchema::jsrt(false),
            image_size: 32,
            base_width: 4,
            depth: 2,
            norm: NormKind::Group { groups: 2 },
            head: HeadConfig::Ssn {
                rank: 2,
                mc_samples: 4,
            },
            ..ModelConfig::default()
        },
        train: TrainConfig {
            epochs: 1,
            batch_size: 2,
            warmup_steps: 2,
            ..TrainConfig::default()
        },
        resume,
        epochs,
        split_file: Some(split_file.clone()),
        max_train_cases: None,
        init: None,
        device: Device::Cpu,
    };
    let seen = Recorder::new();
    train(request(false, None), &seen).unwrap();
    let events = seen.take();
    let loaded: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::CaseLoaded(c) => Some((c.done, c.total)),
            _ => None,
        })
        .collect();
    assert_eq!(loaded, [(1, 4), (2, 4), (3, 4), (4, 4)]);
    let rest = &events[4..];
    assert_eq!(
        rest[0],
        TrainEvent::EpochStarted {
            epoch: 1,
            epochs: 1,
            steps: 2
        }
    );
    assert!(
        matches!(rest[1], TrainEvent::Step { step: 1, steps: 2, mean_loss } if mean_loss.is_finite())
    );
    assert!(matches!(rest[2], TrainEvent::Step { step: 2, .. }));
    let TrainEvent::EpochFinished {
        record, improved, ..
    } = &rest[3]
    else {
        panic!("{:?}", rest[3]);
    };
    assert!(improved);
    let classes: Vec<_> = record.val_dice.iter().map(|d| d.class.as_str()).collect();
    assert_eq!(classes, ["right_lung", "left_lung", "heart"]);
    assert_eq!(rest.len(), 4);

    // A new run into the same folder is refused; resuming continues at epoch 2.
    let e = train(request(false, None), &seen).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    train(request(true, Some(2)), &seen).unwrap();
    let epochs: Vec<_> = seen
        .take()
        .into_iter()
        .filter_map(|e| match e {
            TrainEvent::EpochFinished { record, epochs, .. } => Some((record.epoch, epochs)),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, [(2, 2)]);
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.starts_with("epoch,train_loss,learning_rate,seconds,val_dice_right_lung,"));

    // Fine-tuning starts from a checkpoint of the same architecture and records it ...
    let init = run.join("model.safetensors");
    let tuned = dir.path().join("tuned");
    train(
        TrainRequest {
            out: tuned.clone(),
            init: Some(init.clone()),
            ..request(false, None)
        },
        &seen,
    )
    .unwrap();
    let info = radlens_seg::checkpoint::SegRun::at(&tuned)
        .read_info()
        .unwrap();
    assert_eq!(info.init, Some(init.display().to_string()));
    // ... and refuses one of another architecture, naming it and leaving no run folder.
    let mut wider = request(false, None);
    wider.out = dir.path().join("wider");
    wider.model.base_width = 8;
    wider.init = Some(init.clone());
    let e = train(wider, &seen).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );
    assert!(!dir.path().join("wider").exists());
}

#[test]
fn a_bad_dataset_leaves_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let req = TrainRequest {
        dataset: "jsrt:/no/such/folder".parse().unwrap(),
        out: run.clone(),
        model: ModelConfig::default(),
        train: TrainConfig::default(),
        resume: false,
        epochs: None,
        split_file: None,
        max_train_cases: None,
        init: None,
        device: Device::Cpu,
    };
    let e = train(req, &radlens_core::Silent).unwrap_err().to_string();
    assert!(e.contains("/no/such/folder"), "{e}");
    assert!(!run.exists());
}

#[test]
fn evaluation_uses_the_models_test_cases_and_reports_each() {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/jsrt-ssn");
    let run = SegRun::at(&model_dir);
    let jsrt = spec("jsrt", "jsrt");
    let dataset = jsrt.open().unwrap();
    let cases = choose_cases(&run, &jsrt, &dataset, None, Some(2)).unwrap();
    assert_eq!(cases.part, SplitPart::Test);
    let test = Split::read(&run.split()).unwrap().test;
    let chosen: Vec<_> = cases.samples.iter().map(|s| s.id.clone()).collect();
    assert_eq!(chosen, test[..2]);

    let covid = spec("covid-cxr", "covid-cxr");
    let covid_set = covid.open().unwrap();
    let all = choose_cases(&run, &covid, &covid_set, None, None).unwrap();
    assert_eq!(
        (all.part, all.samples.len()),
        (SplitPart::All, covid_set.samples.len())
    );
    let e = dataset.select(&ids(&["JPCNN999"])).unwrap_err().to_string();
    assert!(e.contains("'JPCNN999'") && e.contains("jsrt"), "{e}");

    let model = load_model(&model_dir, &Device::Cpu, ConvBackend::Radlens).unwrap();
    let predictor = Predictor::new(model, Device::Cpu);
    let seen = Recorder::new();
    let ev = evaluate(&predictor, &dataset, &cases.samples, 2, 1.0, &seen).unwrap();
    assert_eq!((ev.images.len(), ev.samples), (2, 2));
    for i in &ev.images {
        let unit = |v: Option<f64>| v.is_some_and(|v| (0.0..=1.0).contains(&v));
        assert!(
            unit(i.hm_iou) && unit(i.implausible_sample_fraction),
            "{i:?}"
        );
        assert!(
            unit(i.diversity_low_rank) && unit(i.diversity_diagonal),
            "{i:?}"
        );
    }
    // Cases run in parallel: each is started once, and the finished count rises by one.
    let events = seen.take();
    let mut started: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            EvalEvent::CaseStarted { id, .. } => Some(id.clone()),
            EvalEvent::CaseFinished(_) => None,
        })
        .collect();
    started.sort();
    let mut expected = chosen.clone();
    expected.sort();
    assert_eq!(started, expected);
    let finished: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            EvalEvent::CaseFinished(c) => Some((c.done, c.total)),
            EvalEvent::CaseStarted { .. } => None,
        })
        .collect();
    assert_eq!(finished, [(1, 2), (2, 2)]);
}

/// The shipped SSN carries its calibrated temperature, and on validation cases a
/// cooler temperature gives samples that vary less and are less often implausible.
#[test]
fn temperature_calibration_scores_the_validation_cases() {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/jsrt-ssn");
    let predictor = Predictor::load(&model_dir, &Device::Cpu).unwrap();
    let calibration = SegRun::at(&model_dir).read_calibration().unwrap().unwrap();
    assert_eq!(predictor.temperature, calibration.temperature);
    assert!(predictor.temperature > 0.0 && predictor.temperature < 1.0);

    let jsrt = spec("jsrt", "jsrt");
    let dataset = jsrt.open().unwrap();
    let run = SegRun::at(&model_dir);
    let cases = choose_cases(&run, &jsrt, &dataset, Some(SplitPart::Val), Some(2)).unwrap();
    let scores = score_temperatures(
        &predictor,
        &dataset,
        &cases.samples,
        &[0.05, 1.0],
        8,
        &radlens_core::Silent,
    )
    .unwrap();
    let (cool, hot) = (&scores[0], &scores[1]);
    assert!(cool.sample_diversity < hot.sample_diversity, "{scores:?}");
    assert!(
        cool.implausible_sample_fraction <= hot.implausible_sample_fraction,
        "{scores:?}"
    );
    let e = score_temperatures(
        &predictor,
        &dataset,
        &cases.samples,
        &[0.0],
        8,
        &radlens_core::Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("temperatures must be positive"), "{e}");
}

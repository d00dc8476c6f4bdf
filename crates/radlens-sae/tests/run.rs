//! Training runs on a store: files written, events, exact resume and refused requests.

mod common;

use common::{quick_train_config, Synthetic};
use radlens_core::results::read_json;
use radlens_sae::formats::load_saelens;
use radlens_sae::run::{train_run, SaeSpec, TrainEvent, TrainReport, TrainRequest, HISTORY};
use radlens_sae::tokens::{TokenFilter, TokenPolicy};
use radlens_sae::{Activation, ActivationStore, StoreMeta, TokenRecord, Trainer};
use std::path::Path;
use std::sync::Mutex;

/// A finished store of 200 synthetic 8-wide rows in two shards.
fn store(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("acts");
    let mut store = ActivationStore::create(&path, StoreMeta::new(8, 3, "synthetic")).unwrap();
    let mut data = Synthetic::new(8, 16, 2, 9);
    for shard in 0..2 {
        let records: Vec<TokenRecord> = (0..100)
            .map(|i| TokenRecord {
                doc: format!("r{shard}"),
                position: i,
                token_id: i,
                text: format!("t{i}"),
            })
            .collect();
        store
            .append_shard(&data.batch(100), &records, (shard, shard + 1))
            .unwrap();
    }
    store.finish().unwrap();
    path
}

fn request(acts: &Path, out: &Path, steps: u64) -> TrainRequest {
    let mut train = quick_train_config();
    train.threshold_start_step = 1;
    TrainRequest {
        activations: acts.to_path_buf(),
        out: out.to_path_buf(),
        sae: SaeSpec {
            expansion: 4,
            activation: Activation::BatchTopK { k: 2 },
            group_fractions: Some(vec![0.25, 0.75]),
        },
        train,
        tokens: TokenPolicy::keep_all(),
        batch: 32,
        steps,
        buffer_rows: 64,
        checkpoint_every: 2,
        log_every: 2,
        resume: false,
    }
}

/// Runs `request`, returning its events.
fn run(request: &TrainRequest) -> Vec<TrainEvent> {
    let events = Mutex::new(Vec::new());
    train_run(request, &|e: &TrainEvent| {
        events.lock().unwrap().push(e.clone())
    })
    .unwrap();
    events.into_inner().unwrap()
}

fn history(out: &Path) -> String {
    std::fs::read_to_string(out.join(HISTORY)).unwrap()
}

#[test]
fn a_run_writes_its_checkpoint_history_sae_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, out) = (store(dir.path()), dir.path().join("sae"));
    let events = run(&request(&acts, &out, 5));
    assert_eq!(events[0], TrainEvent::Started { steps_done: 0 });
    let steps: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step {
                stats,
                tokens_per_s,
            } => {
                assert!(*tokens_per_s > 0.0);
                Some(stats.step)
            }
            _ => None,
        })
        .collect();
    assert_eq!(steps, [0, 1, 2, 3, 4]);
    let checkpoints: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Checkpoint { steps_done } => Some(*steps_done),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, [2, 4, 5]);
    // Every second step and the last one, under the header.
    let history = history(&out);
    let rows: Vec<&str> = history
        .lines()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(rows, ["step", "0", "2", "4"]);
    let report: TrainReport = read_json(&out.join("train.json")).unwrap();
    assert_eq!(report.last_step.as_ref().map(|s| s.step), Some(4));
    assert_eq!((report.store_rows, report.sae.d_sae), (200, 32));
    assert_eq!(report.sae.group_sizes, [8, 24]);
    let trainer = Trainer::resume(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(trainer.steps_done(), 5);
    assert_eq!(load_saelens(&out).unwrap().config(), &report.sae);
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let acts = store(dir.path());
    let (full, split) = (dir.path().join("full"), dir.path().join("split"));
    run(&request(&acts, &full, 7));
    run(&request(&acts, &split, 3));
    // A second fresh run into the same directory is refused.
    let err = train_run(&request(&acts, &split, 7), &radlens_core::Silent).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let resume = TrainRequest {
        resume: true,
        ..request(&acts, &split, 7)
    };
    let events = run(&resume);
    assert_eq!(events[0], TrainEvent::Started { steps_done: 3 });
    let weights = |d: &Path| std::fs::read(d.join("sae_weights.safetensors")).unwrap();
    assert_eq!(weights(&full), weights(&split));
    assert_eq!(history(&full), history(&split));
    // Resuming with another SAE than the checkpoint's is refused.
    let mut other = resume.clone();
    other.sae.expansion = 2;
    let err = train_run(&other, &radlens_core::Silent).unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
}

#[test]
fn a_run_trains_on_the_kept_tokens_and_saves_their_filter() {
    let dir = tempfile::tempdir().unwrap();
    let acts = store(dir.path());
    let out = dir.path().join("sae");
    let policy = TokenPolicy {
        min_position: 50,
        max_norm_ratio: None,
    };
    run(&TrainRequest {
        tokens: policy,
        ..request(&acts, &out, 3)
    });
    let report: TrainReport = read_json(&out.join("train.json")).unwrap();
    assert_eq!(report.token_counts.kept, 100); // positions 50..100 of two shards
    assert_eq!(report.token_counts.early_position, 100);
    assert_eq!(TokenFilter::load(&out).unwrap(), Some(report.token_filter));
    // The scale makes the kept rows' mean squared norm 8 (the width), over the whole store.
    let store = ActivationStore::open(&acts).unwrap();
    let mut sum_sq = 0f64;
    for i in 0..2 {
        let x = store.read_shard(i).unwrap().to_vec2::<f32>().unwrap();
        for row in &x[50..] {
            sum_sq += row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
        }
    }
    let want = (8.0 / (sum_sq / 100.0)).sqrt();
    let got = Trainer::resume(&out.join("checkpoint.safetensors"))
        .unwrap()
        .sae()
        .activation_scale() as f64;
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    // A policy that keeps fewer rows than a batch is refused.
    let err = train_run(
        &TrainRequest {
            tokens: TokenPolicy {
                min_position: 99,
                max_norm_ratio: None,
            },
            ..request(&acts, &dir.path().join("few"), 3)
        },
        &radlens_core::Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("keeps 2 rows"), "{err}");
}

#[test]
fn bad_requests_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let acts = store(dir.path());
    let out = dir.path().join("sae");
    let refused = |r: TrainRequest, message: &str| {
        let err = train_run(&r, &radlens_core::Silent).unwrap_err();
        assert!(err.to_string().contains(message), "{message}: {err}");
    };
    let base = || request(&acts, &out, 5);
    refused(
        TrainRequest {
            log_every: 0,
            ..base()
        },
        "--log-every",
    );
    refused(
        TrainRequest { steps: 1, ..base() },
        "--threshold-start-step",
    );
    refused(
        TrainRequest {
            resume: true,
            ..base()
        },
        "nothing to resume",
    );
    refused(
        TrainRequest {
            batch: 500,
            ..base()
        },
        "fewer than one batch of 500",
    );
    refused(
        TrainRequest {
            activations: dir.path().join("missing"),
            ..base()
        },
        "missing",
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}

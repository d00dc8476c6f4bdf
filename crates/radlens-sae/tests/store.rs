//! The activation-shard reader, end to end with training.

mod common;

use candle_core::{Device, Tensor};
use common::{quick_train_config, Synthetic};
use radlens_sae::{ActivationStore, CheckpointPolicy, SaeConfig, StoreMeta, Trainer};
use std::collections::HashMap;
use std::path::Path;

fn write_store(dir: &Path, shards: &[Tensor], d_model: usize) {
    let meta = StoreMeta {
        d_model,
        layer: 15,
        model: "test".into(),
    };
    std::fs::write(dir.join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
    for (i, s) in shards.iter().enumerate() {
        let t = HashMap::from([("activations".to_string(), s.clone())]);
        candle_core::safetensors::save(&t, dir.join(format!("acts_{i:05}.safetensors"))).unwrap();
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

#[test]
fn batches_span_shards_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let all = Tensor::arange(0f32, 48.0, &Device::Cpu)
        .unwrap()
        .reshape((12, 4))
        .unwrap();
    write_store(
        dir.path(),
        &[all.narrow(0, 0, 5).unwrap(), all.narrow(0, 5, 7).unwrap()],
        4,
    );
    let store = ActivationStore::open(dir.path()).unwrap();
    assert_eq!(store.meta.layer, 15);
    let got: Vec<Tensor> = store.batches(5).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        got.iter().map(|t| t.dims()[0]).collect::<Vec<_>>(),
        vec![5, 5, 2]
    );
    assert_eq!(rows(&Tensor::cat(&got, 0).unwrap()), rows(&all));
}

#[test]
fn width_mismatches_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_store(
        dir.path(),
        &[Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap()],
        4,
    );
    let store = ActivationStore::open(dir.path()).unwrap();
    let err = store.batches(2).next().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("width 5") && err.to_string().contains("d_model"),
        "{err}"
    );
    assert!(ActivationStore::open(&dir.path().join("none")).is_err());
}

#[test]
fn trains_from_a_store_with_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Synthetic::new(8, 16, 2, 9);
    write_store(dir.path(), &[data.batch(100), data.batch(100)], 8);
    let store = ActivationStore::open(dir.path()).unwrap();
    let first = store.batches(64).next().unwrap().unwrap();
    let cfg = SaeConfig::matryoshka(8, 32, 2).unwrap();
    let mut t = Trainer::new(cfg, quick_train_config(), &first).unwrap();
    let ckpt = dir.path().join("ckpt.safetensors");
    let policy = CheckpointPolicy {
        path: ckpt.clone(),
        every_steps: 2,
    };
    let stats = t.fit(store.batches(64), 100, Some(&policy)).unwrap();
    assert_eq!(stats.len(), 4);
    assert_eq!(Trainer::resume(&ckpt).unwrap().steps_done(), 4);
    // An SAE of another width rejects the store's activations.
    let mut other = Trainer::new(
        SaeConfig::matryoshka(6, 32, 2).unwrap(),
        quick_train_config(),
        &Synthetic::new(6, 8, 2, 1).batch(8),
    )
    .unwrap();
    let err = other.fit(store.batches(64), 10, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("width 8 does not match the SAE input width 6"),
        "{err}"
    );
}

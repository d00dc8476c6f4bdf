//! The activation-shard reader, end to end with training.

mod common;

use candle_core::{Device, Tensor};
use common::{quick_train_config, Synthetic};
use radlens_sae::{ActivationStore, SaeConfig, StoreMeta, TokenRecord, Trainer};
use std::collections::HashMap;
use std::path::Path;

fn write_store(dir: &Path, shards: &[Tensor], d_model: usize) {
    let meta = StoreMeta::new(d_model, 15, "test");
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
    let err = ActivationStore::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("width 5") && err.to_string().contains("d_model"),
        "{err}"
    );
    assert!(ActivationStore::open(&dir.path().join("none")).is_err());
}

#[test]
fn an_sae_of_another_width_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Synthetic::new(8, 16, 2, 9);
    write_store(dir.path(), &[data.batch(100)], 8);
    let store = ActivationStore::open(dir.path()).unwrap();
    let mut other = Trainer::new(
        SaeConfig::matryoshka(6, 32, 2).unwrap(),
        quick_train_config(),
        &Synthetic::new(6, 8, 2, 1).batch(8),
    )
    .unwrap();
    let err = store.check_reader(other.sae()).unwrap_err();
    assert!(
        err.to_string()
            .contains("width 8 does not match the SAE input width 6"),
        "{err}"
    );
    assert!(err.to_string().contains("layer 15"), "{err}");
    let batch = store.batches(64).next().unwrap().unwrap();
    let err = other.step(&batch).unwrap_err();
    assert!(err.to_string().contains("width 8"), "{err}");
}

fn records(doc: &str, n: usize) -> Vec<TokenRecord> {
    (0..n)
        .map(|i| TokenRecord {
            doc: doc.to_string(),
            position: i as u32,
            token_id: 100 + i as u32,
            text: format!(" tok{i}"),
        })
        .collect()
}

#[test]
fn written_shards_round_trip_with_token_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut store = ActivationStore::create(&path, StoreMeta::new(4, 3, "m")).unwrap();
    assert!(ActivationStore::create(&path, StoreMeta::new(4, 3, "m")).is_err());
    let acts = Tensor::arange(0f32, 20.0, &Device::Cpu)
        .unwrap()
        .reshape((5, 4))
        .unwrap();
    let mut tokens = records("r1", 2);
    tokens.extend(records("r2", 3));
    store.append_shard(&acts, &tokens, (0, 2)).unwrap();
    // Unfinished stores are refused for reading, accepted for resuming.
    let err = ActivationStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    let partial = ActivationStore::open_partial(&path).unwrap();
    assert_eq!(partial.shards()[0].doc_range().unwrap(), Some((0, 2)));
    store.finish().unwrap();

    let store = ActivationStore::open(&path).unwrap();
    assert_eq!(store.rows(), 5);
    assert_eq!(rows(&store.read_shard(0).unwrap()), rows(&acts));
    assert_eq!(store.read_shard_with_tokens(0).unwrap().1, tokens);
    // Wrong widths and row counts are refused.
    let mut store = ActivationStore::open_partial(&path).unwrap();
    let wide = Tensor::zeros((5, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(store.append_shard(&wide, &tokens, (2, 3)).is_err());
    assert!(store.append_shard(&acts, &tokens[..4], (2, 3)).is_err());
}

/// Row ids (first column) of the batches.
fn row_ids(batches: &[Tensor]) -> Vec<u32> {
    batches
        .iter()
        .flat_map(|b| rows(b).into_iter().map(|r| r[0] as u32))
        .collect()
}

#[test]
fn shuffled_batches_visit_every_row_once_per_epoch_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let all = Tensor::arange(0f32, 24.0, &Device::Cpu)
        .unwrap()
        .reshape((24, 1))
        .unwrap();
    let shards: Vec<Tensor> = (0..4).map(|i| all.narrow(0, 6 * i, 6).unwrap()).collect();
    write_store(dir.path(), &shards, 1);
    let store = ActivationStore::open(dir.path()).unwrap();
    // buffer 12 < 24 rows: chunks of two shards; buffer 100: the store is cached.
    for buffer in [12, 100] {
        let take = |seed| -> Vec<Tensor> {
            store
                .shuffled_batches(4, buffer, seed)
                .unwrap()
                .take(12)
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let batches = take(1);
        assert!(batches.iter().all(|b| b.dims() == [4, 1]));
        let ids = row_ids(&batches);
        for epoch in ids.chunks(24) {
            let mut sorted = epoch.to_vec();
            sorted.sort();
            assert_eq!(sorted, (0..24).collect::<Vec<_>>(), "buffer {buffer}");
        }
        assert_ne!(ids[..24], ids[24..], "epochs are reshuffled");
        assert_ne!(ids[..24], (0..24).collect::<Vec<_>>()[..]);
        assert_eq!(ids, row_ids(&take(1)), "same seed, same stream");
        assert_ne!(ids, row_ids(&take(2)));
    }
    assert!(store.shuffled_batches(25, 100, 0).is_err());
}

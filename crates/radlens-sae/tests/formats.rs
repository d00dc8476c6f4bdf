//! SAELens round trips and reading dictionary_learning's `ae.pt`.

mod common;

use candle_core::{Device, Tensor};
use common::{quick_train_config, Synthetic};
use radlens_sae::formats::{load_dictionary_learning, load_saelens, save_saelens};
use radlens_sae::{Activation, Sae, SaeConfig, Trainer};
use std::path::Path;
use std::process::Command;

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

fn trained(cfg: SaeConfig) -> (Sae, Synthetic) {
    let mut data = Synthetic::new(cfg.d_in, 16, 3, 11);
    let mut tc = quick_train_config();
    tc.threshold_start_step = 0;
    let mut t = Trainer::new(cfg, tc, &(data.batch(64) * 3.0).unwrap()).unwrap();
    for _ in 0..20 {
        t.step(&(data.batch(64) * 3.0).unwrap()).unwrap();
    }
    (t.into_sae(), data)
}

#[test]
fn saelens_round_trip_is_exact_without_normalisation() {
    let (sae, mut data) = trained(SaeConfig::matryoshka(16, 64, 3).unwrap());
    let s = sae.activation_scale();
    assert!((s - 1.0).abs() > 1e-3, "test needs a non-trivial scale");
    // The same SAE with the scale folded by hand: saving then loading must be exact.
    let folded = Sae::from_tensors(
        sae.config().clone(),
        sae.w_enc().clone(),
        sae.b_enc().clone(),
        sae.w_dec().clone(),
        sae.b_dec().clone(),
        sae.threshold(),
        1.0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_saelens(&folded, dir.path()).unwrap();
    let loaded = load_saelens(dir.path()).unwrap();
    assert_eq!(loaded.config(), folded.config());
    assert_eq!(loaded.threshold(), folded.threshold());
    for (a, b) in [
        (loaded.w_enc(), folded.w_enc()),
        (loaded.b_enc(), folded.b_enc()),
        (loaded.w_dec(), folded.w_dec()),
        (loaded.b_dec(), folded.b_dec()),
    ] {
        assert_eq!(a.dims(), b.dims());
        assert_eq!(vec(a), vec(b));
    }
    let x = data.batch(32);
    let (ca, cb) = (loaded.encode(&x).unwrap(), folded.encode(&x).unwrap());
    assert_eq!(ca.index.entry_cols(), cb.index.entry_cols());
    assert_eq!(ca.index.entry_rows(), cb.index.entry_rows());
    assert_eq!(vec(&ca.values), vec(&cb.values));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cfg.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["architecture"], "jumprelu");
    assert_eq!(
        (cfg["d_in"].as_u64(), cfg["d_sae"].as_u64()),
        (Some(16), Some(64))
    );
}

#[test]
fn saelens_save_folds_the_activation_scale() {
    for cfg in [
        SaeConfig::matryoshka(16, 64, 3).unwrap(),
        SaeConfig::plain(16, 32, Activation::TopK { k: 3 }).unwrap(),
    ] {
        let (sae, mut data) = trained(cfg);
        let dir = tempfile::tempdir().unwrap();
        save_saelens(&sae, dir.path()).unwrap();
        let loaded = load_saelens(dir.path()).unwrap();
        assert_eq!(loaded.activation_scale(), 1.0);
        let x = (data.batch(32) * 3.0).unwrap();
        let (ca, cb) = (sae.encode(&x).unwrap(), loaded.encode(&x).unwrap());
        assert_eq!(ca.index.entry_cols(), cb.index.entry_cols());
        let scaled: Vec<f32> = vec(&ca.values)
            .iter()
            .map(|v| v / sae.activation_scale())
            .collect();
        assert!(close(&vec(&cb.values), &scaled, 1e-4));
        assert!(close(
            &vec(&loaded.decode(&cb).unwrap()),
            &vec(&sae.decode(&ca).unwrap()),
            1e-4
        ));
    }
}

#[test]
fn saelens_rejects_per_latent_thresholds_and_missing_files() {
    let (sae, _) = trained(SaeConfig::matryoshka(16, 64, 3).unwrap());
    let dir = tempfile::tempdir().unwrap();
    save_saelens(&sae, dir.path()).unwrap();
    let path = dir.path().join("sae_weights.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let ramp: Vec<f32> = (0..64).map(|i| i as f32).collect();
    t.insert(
        "threshold".into(),
        Tensor::new(ramp.as_slice(), &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &path).unwrap();
    let err = load_saelens(dir.path()).err().unwrap();
    assert!(err.to_string().contains("per-latent"), "{err}");
    assert!(load_saelens(&dir.path().join("missing")).is_err());
}

/// A Python with torch, if any.
fn torch_python() -> Option<&'static str> {
    ["/opt/torchvenv/bin/python", "python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import torch"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Writes a dictionary_learning-style Matryoshka state dict and config, and the expected
/// codes and reconstructions of a few inputs.
const FIXTURE: &str = r#"
import json, sys, torch
from torch import nn
torch.manual_seed(0)
d, F, k = 6, 16, 2
class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.W_enc = nn.Parameter(torch.randn(d, F))
        s.b_enc = nn.Parameter(torch.randn(F) * 0.1)
        s.W_dec = nn.Parameter(torch.randn(F, d))
        s.b_dec = nn.Parameter(torch.randn(d))
        s.register_buffer("k", torch.tensor(k, dtype=torch.int))
        s.register_buffer("group_sizes", torch.tensor([4, 12]))
        s.register_buffer("threshold", torch.tensor(0.3))
m = M()
out = sys.argv[1]
torch.save(m.state_dict(), out + "/ae.pt")
json.dump({"trainer": {"activation_dim": d, "dict_size": F, "k": k,
                       "dict_class": "MatryoshkaBatchTopKSAE"}}, open(out + "/config.json", "w"))
x = torch.randn(5, d)
with torch.no_grad():
    pre = torch.relu((x - m.b_dec) @ m.W_enc + m.b_enc)
    f = pre * (pre > m.threshold)
    xh = f @ m.W_dec + m.b_dec
json.dump({"x": x.tolist(), "f": f.tolist(), "x_hat": xh.tolist()}, open(out + "/expected.json", "w"))
"#;

fn rows(v: &serde_json::Value, key: &str) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v[key].clone()).unwrap();
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

#[test]
fn reads_dictionary_learning_ae_pt() {
    let Some(py) = torch_python() else {
        println!("note: skipping the ae.pt test, torch is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(py)
        .args(["-c", FIXTURE, dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "fixture script failed");
    let sae = load_dictionary_learning(dir.path()).unwrap();
    assert_eq!(sae.config().group_sizes, vec![4, 12]);
    assert_eq!(sae.config().activation, Activation::BatchTopK { k: 2 });
    assert_eq!(sae.threshold(), Some(0.3));
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    let codes = sae.encode(&rows(&want, "x")).unwrap();
    assert!(close(
        &vec(&codes.to_dense().unwrap()),
        &vec(&rows(&want, "f")),
        1e-5
    ));
    assert!(close(
        &vec(&sae.decode(&codes).unwrap()),
        &vec(&rows(&want, "x_hat")),
        1e-5
    ));
    // A mismatched config is reported.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"trainer": {"activation_dim": 7, "dict_size": 16, "k": 2}}"#,
    )
    .unwrap();
    let err = load_dictionary_learning(dir.path()).err().unwrap();
    assert!(err.to_string().contains("activation_dim"), "{err}");
    assert!(load_dictionary_learning(Path::new("/nonexistent")).is_err());
}

/// Inputs of the `sae_ae_pt` fuzz target (`fuzz/`), kept whole: `config.json`, a NUL byte,
/// then `ae.pt`. The seed is a state dict torch saved (`fuzz/seeds.sh`). The fuzzer changed
/// a string length in its pickle to 4 GB, which candle allocated before it read the string.
/// That input is now refused by the zip's checksum; the same change made with a correct
/// checksum, as a hostile file would carry, is refused by the length check.
#[test]
fn ae_pt_inputs_the_fuzzer_stopped_on() {
    let split = |bytes: &[u8]| {
        let at = bytes.iter().position(|&b| b == 0).unwrap();
        (bytes[..at].to_vec(), bytes[at + 1..].to_vec())
    };
    let load = |config: &[u8], ae_pt: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        std::fs::write(dir.path().join("ae.pt"), ae_pt).unwrap();
        load_dictionary_learning(dir.path()).map_err(|e| e.to_string())
    };
    let (config, seed) = split(include_bytes!("fuzz_inputs/seed-matryoshka"));
    let sae = load(&config, &seed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((sae.config().d_in, sae.config().d_sae), (4, 8));
    assert_eq!(sae.config().group_sizes, vec![4, 4]);

    let (config, found) = split(include_bytes!("fuzz_inputs/oom-db5012c5"));
    let Err(err) = load(&config, &found) else {
        panic!("the fuzzer's input was accepted");
    };
    assert!(err.contains("data.pkl: Invalid checksum"), "{err}");

    let Err(err) = load(&config, &with_first_string_length(&seed, u32::MAX - 0xfe)) else {
        panic!("a 4 GB string length was accepted");
    };
    assert!(
        err.contains("ae.pt") && err.contains("a string in the pickle claims 4294967041 bytes"),
        "{err}"
    );
}

/// `ae_pt` rewritten (entries stored, checksums recomputed) with the length of the first
/// BINUNICODE string in its pickle set to `len`.
fn with_first_string_length(ae_pt: &[u8], len: u32) -> Vec<u8> {
    use std::io::{Cursor, Read, Write};
    let mut zip = zip::ZipArchive::new(Cursor::new(ae_pt)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("data.pkl") {
            let at = bytes.iter().position(|&b| b == b'X').unwrap();
            bytes[at + 1..at + 5].copy_from_slice(&len.to_le_bytes());
        }
        out.start_file(name, stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

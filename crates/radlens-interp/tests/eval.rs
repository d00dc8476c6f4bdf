//! SAE evaluation without the language model: progress, the report and bad inputs.

use candle_core::{Device, Tensor};
use radlens_core::observe::Count;
use radlens_core::results::read_json;
use radlens_interp::eval::{
    evaluate_sae, EvalEvent, EvalReport, EvalRequest, FilterSource, REPORT,
};
use radlens_sae::formats::save_saelens;
use radlens_sae::{Activation, ActivationStore, SaeConfig, StoreMeta, TokenRecord, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A store of `rows` seeded `d`-wide rows in one shard, and an SAE trained a step on them.
fn store_and_sae(dir: &Path, rows: usize, d: usize) -> (PathBuf, PathBuf) {
    let x = Tensor::randn(0f32, 1.0, (rows, d), &Device::Cpu).unwrap();
    let acts = dir.join("acts");
    let mut store = ActivationStore::create(&acts, StoreMeta::new(d, 3, "m")).unwrap();
    let records: Vec<TokenRecord> = (0..rows as u32)
        .map(|i| TokenRecord {
            doc: "r".into(),
            position: i,
            token_id: i,
            text: format!("t{i}"),
        })
        .collect();
    store.append_shard(&x, &records, (0, 1)).unwrap();
    store.finish().unwrap();
    let cfg = SaeConfig::plain(d, 2 * d, Activation::TopK { k: 2 }).unwrap();
    let mut t = Trainer::new(cfg, Default::default(), &x).unwrap();
    t.step(&x).unwrap();
    let sae = dir.join("sae");
    save_saelens(t.sae(), &sae).unwrap();
    (acts, sae)
}

#[test]
fn reconstruction_report_is_written_and_read_by_the_same_type() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, sae) = store_and_sae(dir.path(), 50, 8);
    let request = EvalRequest {
        sae,
        activations: acts,
        language_model: None,
        out: dir.path().join("eval"),
    };
    let events = Mutex::new(Vec::new());
    let report = evaluate_sae(&request, &|e: &EvalEvent| {
        events.lock().unwrap().push(e.clone())
    })
    .unwrap();
    let done = vec![EvalEvent::Encoded(Count {
        done: 50,
        total: 50,
    })];
    assert_eq!(events.into_inner().unwrap(), done);
    assert_eq!(report.reconstruction.tokens, 50);
    assert_eq!(report.fvu, report.reconstruction.fvu);
    assert_eq!(report.ce_clean, None);
    // The SAE has no token_filter.json: the default policy, fitted here, drops positions
    // 0 and 1.
    assert_eq!(report.token_filter_from, FilterSource::EvaluatedStore);
    assert_eq!(report.reconstruction.token_counts.early_position, 2);
    let path = request.out.join(REPORT);
    // serde_json parses floats to within an ulp, so compare the numbers loosely.
    let back = read_json::<EvalReport>(&path).unwrap();
    assert_eq!(
        back.reconstruction.token_counts,
        report.reconstruction.token_counts
    );
    assert_eq!(back.token_filter_from, report.token_filter_from);
    for (a, b) in [
        (back.fvu, report.fvu),
        (back.fvu_all_tokens, report.fvu_all_tokens),
    ] {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // Without a model there is no language-model section, and its headline numbers are null.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("language_model"), "{text}");
    assert!(text.contains("\"delta_ce\": null"), "{text}");
}

#[test]
fn an_sae_of_another_width_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sae) = store_and_sae(dir.path(), 10, 8);
    let other = tempfile::tempdir().unwrap();
    let (acts, _) = store_and_sae(other.path(), 10, 6);
    let request = EvalRequest {
        sae,
        activations: acts.clone(),
        language_model: None,
        out: dir.path().join("eval"),
    };
    let err = evaluate_sae(&request, &radlens_core::Silent).unwrap_err();
    assert!(
        err.to_string().contains(&acts.display().to_string()),
        "{err}"
    );
    assert!(!request.out.join(REPORT).exists());
}

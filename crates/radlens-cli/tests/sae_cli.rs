//! `radlens sae harvest/train/eval/features` end to end on a few real reports, with
//! resume and the bad-input errors.

mod common;

use common::{radlens, shared, stderr};
use radlens_core::results::read_json;
use radlens_interp::eval::EvalReport;
use radlens_report::ReportPart;
use radlens_sae::run::TrainReport;
use radlens_sae::StoreMeta;
use std::path::Path;

fn model() -> String {
    shared()
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        .display()
        .to_string()
}

fn corpus() -> String {
    format!("iu-xray:{}", shared().join("data/iu-xray").display())
}

fn ok(args: &[&str]) -> String {
    let out = radlens(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(args: &[&str], message: &str) {
    let out = radlens(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = stderr(&out);
    assert!(
        err.contains(message),
        "{args:?}: expected '{message}' in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn harvest(part: &str, out: &Path, reports: &str) {
    let (model, corpus) = (model(), corpus());
    ok(&[
        "sae",
        "harvest",
        "--model",
        &model,
        "--corpus",
        &corpus,
        "--part",
        part,
        "--max-reports",
        reports,
        "--context",
        "64",
        "--shard-tokens",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn train_args<'a>(acts: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "sae",
        "train",
        "--activations",
        acts,
        "--expansion",
        "2",
        "--k",
        "8",
        "--batch",
        "128",
        "--steps",
        steps,
        "--warmup-steps",
        "2",
        "--threshold-start-step",
        "0",
        "--decay-fraction",
        "0.5",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--out",
        out,
    ]
}

#[test]
fn harvest_train_resume_eval_features() {
    let dir = tempfile::tempdir().unwrap();
    let (train_acts, held_acts) = (dir.path().join("train"), dir.path().join("heldout"));
    harvest("train", &train_acts, "8");
    harvest("heldout", &held_acts, "3");
    let meta: StoreMeta = read_json(&train_acts.join("meta.json")).unwrap();
    assert_eq!(meta.d_model, 576);
    assert_eq!(meta.hook.as_deref(), Some("resid_post.15"));
    assert!(meta.complete);

    // Four steps at once, or two then a resumed two: the same SAE (the resumed run decays
    // the learning rate over its new last half, steps 2 and 3).
    let acts = train_acts.to_str().unwrap();
    let (full, split) = (dir.path().join("full"), dir.path().join("split"));
    ok(&train_args(acts, full.to_str().unwrap(), "4"));
    ok(&train_args(acts, split.to_str().unwrap(), "2"));
    fails_with(&train_args(acts, split.to_str().unwrap(), "4"), "--resume");
    let mut resume = train_args(acts, split.to_str().unwrap(), "4");
    resume.push("--resume");
    ok(&resume);
    let weights = |d: &Path| std::fs::read(d.join("sae_weights.safetensors")).unwrap();
    assert_eq!(weights(&full), weights(&split));
    let history = std::fs::read_to_string(split.join("history.csv")).unwrap();
    assert_eq!(
        history.lines().count(),
        5,
        "header + steps 0..4 once each:\n{history}"
    );
    assert!(full.join("cfg.json").exists() && full.join("train.json").exists());

    // Evaluation with the model spliced in.
    let eval = dir.path().join("eval");
    let model = model();
    ok(&[
        "sae",
        "eval",
        "--sae",
        full.to_str().unwrap(),
        "--activations",
        held_acts.to_str().unwrap(),
        "--model",
        &model,
        "--max-tokens",
        "60",
        "--out",
        eval.to_str().unwrap(),
    ]);
    let m: EvalReport = read_json(&eval.join("metrics.json")).unwrap();
    let rec = &m.reconstruction;
    assert_eq!(rec.fvu_per_prefix.len(), 5);
    assert!(rec.fvu > 0.0);
    let lm = m.language_model.unwrap();
    assert!(lm.metrics.tokens >= 60);
    assert!(lm.metrics.ce_zero_ablation > lm.metrics.ce_clean);
    assert_eq!(lm.part, ReportPart::Heldout);
    let train: TrainReport = read_json(&full.join("train.json")).unwrap();
    assert_eq!(train.last_step.map(|s| s.step), Some(3));

    // Feature database.
    let db = dir.path().join("features.sqlite");
    ok(&[
        "sae",
        "features",
        "--sae",
        full.to_str().unwrap(),
        "--activations",
        acts,
        "--out",
        db.to_str().unwrap(),
    ]);
    assert!(db.exists());

    // Bad inputs: a layer past the model, an SAE of another width, a missing store.
    fails_with(
        &[
            "sae",
            "harvest",
            "--model",
            &model,
            "--corpus",
            &corpus(),
            "--layer",
            "30",
            "--max-reports",
            "1",
            "--out",
            dir.path().join("deep").to_str().unwrap(),
        ],
        "resid_post.30",
    );
    let narrow = dir.path().join("narrow");
    std::fs::create_dir(&narrow).unwrap();
    let cfg = std::fs::read_to_string(full.join("cfg.json")).unwrap();
    std::fs::write(
        narrow.join("cfg.json"),
        cfg.replace("\"d_in\": 576", "\"d_in\": 512"),
    )
    .unwrap();
    std::fs::copy(
        full.join("sae_weights.safetensors"),
        narrow.join("sae_weights.safetensors"),
    )
    .unwrap();
    let out = radlens(&[
        "sae",
        "eval",
        "--sae",
        narrow.to_str().unwrap(),
        "--activations",
        acts,
        "--out",
        eval.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    fails_with(
        &[
            "sae",
            "train",
            "--activations",
            "/nonexistent/acts",
            "--out",
            dir.path().join("x").to_str().unwrap(),
        ],
        "/nonexistent/acts",
    );
}

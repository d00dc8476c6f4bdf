//! End-to-end checks of the `radlens` binary on the real public data in `../shared`.

mod common;

use common::{radlens, shared, stderr};
use std::path::{Path, PathBuf};

fn jsrt() -> String {
    format!("jsrt:{}", shared().join("data/jsrt").display())
}

/// A tiny, fast model config for end-to-end runs.
fn tiny_config(dir: &Path, extra_train: &str) -> PathBuf {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        format!(
            "[model]\nclasses = {{ names = ['background', 'right_lung', 'left_lung', 'heart'] }}\nimage_size = 32\nbase_width = 4\ndepth = 2\nnorm = {{ kind = 'group', groups = 2 }}\nhead = {{ kind = 'ssn', rank = 2, mc_samples = 4 }}\nintensity = {{ equalize = true }}\n[train]\nepochs = 1\nbatch_size = 2\n{extra_train}"
        ),
    )
    .unwrap();
    p
}

#[test]
fn help_reads_well() {
    let o = radlens(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("seg"), "{out}");
    let o = radlens(&["seg", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for c in ["train", "predict", "eval"] {
        assert!(out.contains(c), "{out}");
    }
}

#[test]
fn train_predict_eval_resume_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "warmup_steps = 2\n");
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = radlens(&[
        "seg",
        "train",
        "--dataset",
        &jsrt(),
        "--out",
        run_s,
        "--config",
        cfg.to_str().unwrap(),
        "--max-cases",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.json",
        "model.safetensors",
        "split.json",
        "history.csv",
        "checkpoint/last.safetensors",
        "checkpoint/state.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // a second train into the same folder must not clobber it
    let o = radlens(&[
        "seg",
        "train",
        "--dataset",
        &jsrt(),
        "--out",
        run_s,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    // options of the other kind of model are refused before any folder is made
    let other = dir.path().join("other");
    let refused = |config: &str, option: &str, want: &str| {
        let o = radlens(&[
            "seg",
            "train",
            "--dataset",
            &jsrt(),
            "--out",
            other.to_str().unwrap(),
            "--config",
            config,
            option,
            "3",
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert!(!other.exists());
    };
    // SemanticGAN's step counts for a U-Net, and a U-Net's epochs for a SemanticGAN
    refused(
        cfg.to_str().unwrap(),
        "--encoder-steps",
        "--encoder-steps apply to SemanticGAN",
    );
    refused(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/jsrt-semanticgan-64.toml"
        ),
        "--epochs",
        "--epochs, --max-cases and --conv apply to U-Net",
    );
    // resume with more epochs continues from epoch 2
    let o = radlens(&[
        "seg",
        "train",
        "--dataset",
        &jsrt(),
        "--out",
        run_s,
        "--resume",
        "--epochs",
        "2",
        "--max-cases",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("epoch   2/2"), "{}", stderr(&o));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    // its training curves: one plot per history column but the time
    let o = radlens(&["seg", "curves", "--run", run_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(run.join("curves.html")).unwrap();
    let columns = history.lines().next().unwrap().split(',').count();
    assert_eq!(page.matches("<svg").count(), columns - 2, "{history}");

    let img = shared().join("data/jsrt/images/JPCNN001.png");
    let out = dir.path().join("pred");
    let o = radlens(&[
        "seg",
        "predict",
        "--model",
        run_s,
        img.to_str().unwrap(),
        "--samples",
        "3",
        "--pixel-spacing",
        "0.35",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let case = out.join("JPCNN001");
    for f in [
        "mean_mask.png",
        "overlay.png",
        "entropy.png",
        "disagreement.png",
        "samples/sample_02.png",
        "result.json",
    ] {
        assert!(case.join(f).is_file(), "{f} missing");
    }
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["classes"].as_array().unwrap().len(), 3);
    assert_eq!(result["samples"], 3);
    let px = result["classes"][0]["area_px"].as_f64().unwrap();
    let mm2 = result["classes"][0]["area_mm2"].as_f64().unwrap();
    assert!((mm2 - px * 0.35 * 0.35).abs() < 1e-6 * px.max(1.0));

    let ev = dir.path().join("eval");
    let o = radlens(&[
        "seg",
        "eval",
        "--model",
        run_s,
        "--dataset",
        &jsrt(),
        "--split",
        "val",
        "--samples",
        "4",
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ev.join("summary.json")).unwrap()).unwrap();
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    assert_eq!(s["images"], split["val"].as_array().unwrap().len());
    // stderr is no terminal here: a line at each tenth of the validation cases
    let n = split["val"].as_array().unwrap().len();
    let log = stderr(&o);
    assert_eq!(log.matches("evaluated ").count(), n.min(10), "{log}");
    assert!(log.contains(&format!("evaluated {n}/{n} cases")), "{log}");
    assert_eq!(s["distance_unit"], "mm");
    for c in ["right_lung", "left_lung", "heart"] {
        let d = s["metrics"]["dice"][c]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
    }
    assert!(s["stochastic"]["ged_squared"]["mean"].is_number());
    assert!(s["calibration"]["ece_10_bins"]["mean"].is_number());
    let csv = std::fs::read_to_string(ev.join("per_image.csv")).unwrap();
    let val_cases = split["val"].as_array().unwrap().len();
    assert_eq!(csv.lines().count(), 1 + 3 * val_cases);

    // an evaluation compared with itself: every paired difference is 0, on every case
    let cmp = dir.path().join("compare");
    let ev_s = ev.to_str().unwrap();
    let o = radlens(&[
        "seg",
        "compare",
        "--eval",
        &format!("a={ev_s}"),
        "--eval",
        &format!("b={ev_s}"),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: radlens_seg::compare::CompareSummary =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    assert_eq!((c.reference.as_str(), c.comparisons.len()), ("a", 1));
    assert_eq!(c.comparisons[0].classes.len(), 3);
    for p in &c.comparisons[0].classes {
        assert_eq!(
            (p.dice.n, p.dice.mean_difference, p.dice.p_wilcoxon),
            (val_cases, 0.0, None)
        );
    }
    let o = radlens(&[
        "seg", "compare", "--eval", ev_s, "--eval", "b=x", "--out", "y",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("NAME=DIR"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_inputs_give_clear_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let missing = dir.path().join("nope.png");
    let o = radlens(&["seg", "predict", missing.to_str().unwrap(), "--out", out_s]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nope.png") && stderr(&o).contains("not found"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let good = shared().join("data/jsrt/images/JPCNN001.png");
    let o = radlens(&[
        "seg",
        "predict",
        good.to_str().unwrap(),
        corrupt.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt.jpg"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing is written when one input is bad");

    // the shipped model is a U-Net: an inversion option is refused, not ignored
    let o = radlens(&[
        "seg",
        "predict",
        good.to_str().unwrap(),
        "--inversion-steps",
        "0",
        "--out",
        out_s,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--inversion-steps") && stderr(&o).contains("SemanticGAN"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    let o = radlens(&["seg", "eval", "--dataset", "mimic:/data", "--out", out_s]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown dataset kind 'mimic'"),
        "{}",
        stderr(&o)
    );

    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(&bad_cfg, "[model]\nimage_size = 'big'\n").unwrap();
    let o = radlens(&[
        "seg",
        "train",
        "--dataset",
        &jsrt(),
        "--out",
        out_s,
        "--config",
        bad_cfg.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn divergence_stops_training_with_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "learning_rate = 1e30\nwarmup_steps = 1\n");
    let run = dir.path().join("run");
    let o = radlens(&[
        "seg",
        "train",
        "--dataset",
        &jsrt(),
        "--out",
        run.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--max-cases",
        "6",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("diverged at epoch 1, step"), "{e}");
    assert!(!run.join("model.safetensors").exists());
}

//! The feature browser with the real SmolLM2: a run whose SAE fits the model is steered
//! (baseline and steered replies side by side, same seed) and read through the
//! unembedding; runs that do not fit say why; limits, roles, CSRF and the queue hold;
//! feature search matches concepts and tokens literally, SQL metacharacters included.

mod common;

use common::*;
use radlens_interp::decoder_logits::DecoderLogits;
use radlens_interp::feature_search::{MatchKind, SearchHit};
use radlens_server::features::{LmLink, RunInfo};
use radlens_server::steering::SteerResult;
use reqwest::StatusCode;
use serde_json::json;

const LAYER: usize = 6;

#[test]
fn steering_logits_and_search_on_smollm2() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let smol = smollm2_sae_run(dir.path(), "smol", 8, LAYER);
    let identity = sae_run(dir.path());
    cfg.sae_runs = vec![
        misfit(&identity, "narrow", "6"),
        misfit(&smol, "deep", "40"),
        smol,
        identity,
    ];
    cfg.lm_model = Some(smollm2());
    let s = start_with(cfg);
    let c = login(&s, RADIOLOGIST);

    // the fitting run is ready; the 4-wide identity run (no SAE files, another model) says why
    let runs: Vec<RunInfo> = c
        .get(s.url("/api/features"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["deep", "narrow", "sae-test", "smol"]);
    let reason = |i: usize| match &runs[i].lm {
        LmLink::Unavailable { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason(0).contains("layer 40"), "{}", reason(0));
    assert!(
        reason(1).contains("reads 4-wide activations but SmolLM2-135M-Instruct.Q4_1.gguf has a 576-wide residual stream"),
        "{}",
        reason(1)
    );
    let runs = &runs[2..];
    assert_eq!(
        runs[1].lm,
        LmLink::Ready {
            model: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            layer: LAYER
        }
    );
    match &runs[0].lm {
        LmLink::Unavailable { reason } => assert!(
            reason.contains("activations of m, not of SmolLM2"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }

    // decoder logits: 20 each way, sorted
    let l: DecoderLogits = c
        .get(s.url("/api/features/smol/1/logits"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((l.top.len(), l.bottom.len()), (20, 20));
    assert!(l.top.windows(2).all(|w| w[0].logit >= w[1].logit));
    assert!(l.bottom.windows(2).all(|w| w[0].logit <= w[1].logit));
    assert!(l.top[19].logit > l.bottom[19].logit);
    let r = c
        .get(s.url("/api/features/sae-test/1/logits"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // steering: the same prompt and seed, with the feature added, changes the reply and
    // raises the feature's activation on it by about the coefficient (tied ReLU SAE)
    let req = json!({"prompt": "Describe a normal chest X-ray.", "coef": 60.0, "mode": "add", "max_tokens": 6});
    let steer = |body: &serde_json::Value| {
        c.post(s.url("/api/features/smol/1/steer"))
            .json(body)
            .send()
            .unwrap()
    };
    let r = steer(&req);
    assert_eq!(r.status(), StatusCode::OK);
    let a: SteerResult = r.json().unwrap();
    assert_eq!((a.feature, a.layer, a.max_tokens), (1, LAYER, 6));
    assert_ne!(a.pair.baseline, a.pair.steered, "{a:?}");
    assert!(
        a.pair.steered_activation > a.pair.baseline_activation + 30.0,
        "{a:?}"
    );
    // the baseline is the model's own greedy reply, and a repeat gives the same pair
    let b: SteerResult = steer(&req).json().unwrap();
    assert_eq!(a.pair, b.pair);
    // clamping at 0 leaves a feature that barely fires close to the baseline
    let clamp: SteerResult = steer(&json!({"prompt": "Describe a normal chest X-ray.", "coef": 0.0, "mode": "clamp", "max_tokens": 6}))
        .json()
        .unwrap();
    assert_eq!(clamp.pair.baseline, a.pair.baseline);
    assert!(clamp.pair.steered_activation <= 1e-3, "{clamp:?}");

    // bad requests
    for (body, status) in [
        (
            json!({"prompt": "x", "coef": 1.0, "max_tokens": 65}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "x", "coef": 1.0, "max_tokens": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"prompt": "x", "coef": 1e9}), StatusCode::BAD_REQUEST),
        (
            json!({"prompt": "  ", "coef": 1.0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "x".repeat(1001), "coef": 1.0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "x", "coef": 1.0, "mode": "multiply"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "x", "coef": 1.0, "temperature": 9.0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "x", "coef": 1.0, "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = steer(&body);
        assert_eq!(r.status(), status, "{body}");
        let e: radlens_server::error::ErrorBody = r.json().unwrap();
        assert!(!e.error.is_empty());
    }
    let post = |c: &reqwest::blocking::Client, path: &str| {
        c.post(s.url(path))
            .json(&json!({"prompt": "x", "coef": 1.0, "max_tokens": 1}))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(
        post(&c, "/api/features/smol/8/steer"),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&c, "/api/features/nope/0/steer"),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&c, "/api/features/sae-test/1/steer"),
        StatusCode::CONFLICT
    );
    // a viewer may not steer; without the CSRF header or a session nobody may
    assert_eq!(
        post(&login(&s, VIEWER), "/api/features/smol/1/steer"),
        StatusCode::FORBIDDEN
    );
    let (cookie, _) = session(&s, RADIOLOGIST);
    let no_csrf = client()
        .post(s.url("/api/features/smol/1/steer"))
        .header("cookie", cookie)
        .json(&json!({"prompt": "x", "coef": 1.0}))
        .send()
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post(&client(), "/api/features/smol/1/steer"),
        StatusCode::UNAUTHORIZED
    );
    let audit: Vec<radlens_server::db::accounts::AuditEntry> = login(&s, ADMIN)
        .get(s.url("/api/audit"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action.as_str() == "steer" && e.detail.contains("smol latent 1")));

    // more requests than the queue holds: the rest are refused with 503 at once, none fails
    let statuses: Vec<StatusCode> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    c.post(s.url("/api/features/smol/1/steer"))
                        .json(&json!({"prompt": "Describe a chest X-ray.", "coef": 5.0, "max_tokens": 1}))
                        .send()
                        .unwrap()
                        .status()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + busy, 8, "{statuses:?}");
    assert!(
        (1..=5).contains(&ok),
        "at most 1 running + 4 waiting: {statuses:?}"
    );

    // search: tokens of top examples and nothing for metacharacters taken literally
    let search = |run: &str, q: &str| -> Vec<SearchHit> {
        let r = c
            .get(s.url(&format!("/api/features/{run}/search")))
            .query(&[("q", q)])
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{q}");
        r.json().unwrap()
    };
    // latent 2's explanation first, with its score; then every latent but 0, which has
    // " enlarged" in its 3 reports' top examples, ties going to the stronger activation
    // there (latent 2: 5, latent 1: 3 / 2, latent 3: 1)
    let hits = search("sae-test", "ENLARGED");
    let got: Vec<(usize, MatchKind, &str, Option<f64>)> = hits
        .iter()
        .map(|h| (h.index, h.kind, h.text.as_str(), h.score))
        .collect();
    let mut want = vec![(2, MatchKind::Explanation, SAE_EXPLANATIONS[0].2, Some(0.93))];
    want.extend([2, 1, 3].map(|i| (i, MatchKind::Token, " enlarged", Some(3.0))));
    assert_eq!(got, want, "{hits:?}");
    // metacharacters match only themselves: '%' is in one explanation, the rest nowhere
    let hits = search("sae-test", "%");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].index, hits[0].kind, hits[0].score),
        (3, MatchKind::Explanation, None)
    );
    for q in ["_", "' OR 1=1 --", "\"; DROP TABLE latents; --", "\\", "%%"] {
        assert!(search("sae-test", q).is_empty(), "{q}");
    }
    let hits = search("smol", "enlarged");
    assert_eq!(
        (hits[0].index, hits[0].kind),
        (1, MatchKind::Token),
        "{hits:?}"
    );
    // the database is intact after the hostile queries
    let f: radlens_interp::feature_db::Feature = c
        .get(s.url("/api/features/sae-test/2"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(f.top.len(), 3);
    for (path, status) in [
        ("/api/features/sae-test/search?q=", StatusCode::BAD_REQUEST),
        ("/api/features/sae-test/search", StatusCode::BAD_REQUEST),
        ("/api/features/nope/search?q=heart", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            c.get(s.url(path)).send().unwrap().status(),
            status,
            "{path}"
        );
    }
    let long = "a".repeat(201);
    let r = c
        .get(s.url("/api/features/sae-test/search"))
        .query(&[("q", long.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A copy of run folder `from` (SAE and feature database) as `<dir>/<name>` whose
/// database says it was computed on SmolLM2's layer `layer`.
fn misfit(from: &std::path::Path, name: &str, layer: &str) -> std::path::PathBuf {
    let to = from.with_file_name(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
    let db = rusqlite::Connection::open(to.join(radlens_server::features::FEATURE_DB)).unwrap();
    let model = smollm2()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (k, v) in [("model", model.as_str()), ("layer", layer)] {
        db.execute("INSERT OR REPLACE INTO meta VALUES (?1, ?2)", [k, v])
            .unwrap();
    }
    to
}

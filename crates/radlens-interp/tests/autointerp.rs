//! `sae explain` / `sae score` end to end on a store, SAE and feature database built
//! here, where each feature's meaning is known: feature 0 fires on "effusion" (but not
//! after "no"), feature 1 on "rib", feature 2 on "heart", feature 3 never. The embedding
//! scorer runs the real all-MiniLM-L6-v2; the endpoint explainer and judge call a real
//! `radlens lm serve` with the SmolLM2 GGUF; broken endpoints and mismatched inputs are
//! refused with nothing written.

mod common;

use candle_core::{DType, Device, Tensor};
use common::lm;
use radlens_core::observe::Silent;
use radlens_core::results::read_json;
use radlens_interp::autointerp::contexts::{Context, NegativeKind, ScoringSet};
use radlens_interp::autointerp::llm::{self, EndpointModel, LocalModel};
use radlens_interp::autointerp::ngram::NgramConfig;
use radlens_interp::autointerp::run::{
    explain, score, Autointerp, Explainer, ScoreRow, Scorers, Selection, Target, SCORES,
};
use radlens_interp::autointerp::score::embedding_score;
use radlens_interp::feature_db::FeatureDb;
use radlens_interp::features::{build_feature_db, FeatureConfig};
use radlens_interp::serve::{ServeConfig, Server};
use radlens_lm::{ChatClient, ClientConfig, SentenceEncoder};
use radlens_sae::formats::save_saelens;
use radlens_sae::{Activation, ActivationStore, Sae, SaeConfig, StoreMeta, TokenRecord};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rusqlite::Connection;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const D: usize = 4;
const SENTENCES: [&str; 6] = [
    "small pleural effusion on the left .",
    "there is no effusion .",
    "fracture of the left rib .",
    "heart size is normal .",
    "the lungs are clear .",
    "new effusion at the right base .",
];

/// The coordinate (= feature) a token turns on, given the token before it.
fn feature_of(prev: &str, word: &str) -> Option<usize> {
    match word {
        "effusion" if prev != "no" => Some(0),
        "rib" => Some(1),
        "heart" => Some(2),
        _ => None,
    }
}

/// 80 reports of three random sentences, one token per word; a token's row is zero but
/// for its feature's coordinate.
fn build_store(dir: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut store = ActivationStore::create(dir, StoreMeta::new(D, 0, "m")).unwrap();
    let (mut rows, mut records) = (Vec::new(), Vec::new());
    for doc in 0..80 {
        let words: Vec<&str> = (0..3)
            .flat_map(|_| SENTENCES.choose(&mut rng).unwrap().split(' '))
            .collect();
        for (p, w) in words.iter().enumerate() {
            let mut row = [0f32; D];
            let prev = if p > 0 { words[p - 1] } else { "" };
            if let Some(f) = feature_of(prev, w) {
                row[f] = 1.0 + (doc % 5) as f32;
            }
            rows.extend(row);
            records.push(TokenRecord {
                doc: format!("r{doc}"),
                position: p as u32,
                token_id: 0,
                text: if p == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                },
            });
        }
    }
    let x = Tensor::from_vec(rows, (records.len(), D), &Device::Cpu).unwrap();
    store.append_shard(&x, &records, (0, 1)).unwrap();
    store.finish().unwrap();
}

/// An SAE whose feature i reads coordinate `perm[i]`, in two Matryoshka groups of 2.
fn sae(perm: [usize; D]) -> Sae {
    let mut w = vec![0f32; D * D];
    for (i, &c) in perm.iter().enumerate() {
        w[c * D + i] = 1.0;
    }
    let enc = Tensor::from_vec(w, (D, D), &Device::Cpu).unwrap();
    let dec = enc.t().unwrap().contiguous().unwrap();
    let zeros = |n| Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
    let cfg = SaeConfig::new(D, D, Activation::TopK { k: D }, vec![2, 2]).unwrap();
    Sae::from_tensors(cfg, enc, zeros(D), dec, zeros(D), None, 1.0).unwrap()
}

/// Store, SAE and feature database in `root`; returns the database path.
fn fixture(root: &Path) -> PathBuf {
    build_store(&root.join("acts"));
    let sae = sae([0, 1, 2, 3]);
    save_saelens(&sae, &root.join("sae")).unwrap();
    let db = root.join("features.sqlite");
    let cfg = FeatureConfig {
        top_examples: 6,
        quantiles: 4,
        per_quantile: 4,
        context: 3,
        ..FeatureConfig::default()
    };
    let store = ActivationStore::open(&root.join("acts")).unwrap();
    let provenance = [
        ("sae", root.join("sae").display().to_string()),
        ("activations", root.join("acts").display().to_string()),
    ];
    build_feature_db(&sae, &store, &cfg, &provenance, &db, &Silent).unwrap();
    db
}

fn target(db: &Path) -> Target {
    Target {
        db: db.to_path_buf(),
        sae: None,
        activations: None,
    }
}

fn count(db: &Path, table: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn minilm() -> &'static SentenceEncoder {
    static ENC: OnceLock<SentenceEncoder> = OnceLock::new();
    ENC.get_or_init(|| SentenceEncoder::load(&radlens_testdata::minilm_dir()).unwrap())
}

#[test]
fn ngram_explanations_name_each_features_token_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let all = Selection::Stratified {
        count: 10,
        min_fires: 1,
        seed: 0,
    };
    let mut ai = Autointerp::open(&target(&db), &all).unwrap();
    // feature 3 never fires; the others are taken from groups 0 and 1 in turn
    let mut chosen = ai.latents().to_vec();
    assert_eq!(chosen.len(), 3);
    assert!([0, 1].contains(&chosen[0]) && chosen[1] == 2);
    chosen.sort();
    assert_eq!(chosen, [0, 1, 2]);

    let ngram = Explainer::Ngram(NgramConfig::default());
    let s = explain(&mut ai, &ngram, 0, &Silent).unwrap();
    assert_eq!((s.explained, s.cached), (3, 0));
    let page = FeatureDb::open(&db).unwrap().feature(0).unwrap().unwrap();
    let text = &page.explanations[0].text;
    assert_eq!(page.explanations[0].explainer, "ngram");
    assert!(text.starts_with("\"effusion\""), "{text}");
    assert!(
        text.ends_with("(fires on the token \"effusion\")"),
        "{text}"
    );
    let rib = FeatureDb::open(&db).unwrap().feature(1).unwrap().unwrap();
    assert!(
        rib.explanations[0].text.contains("\"rib\""),
        "{:?}",
        rib.explanations
    );
    // a second run keeps what is there
    let s = explain(&mut ai, &ngram, 0, &Silent).unwrap();
    assert_eq!((s.explained, s.cached), (0, 3));

    // embedding scores of the three explanations: each names its feature's token, and
    // the held-back positives hold that token, so the scores are well above chance
    let scorers = Scorers {
        embedding: Some(minilm()),
        judge: None,
        examples: 6,
        judge_batch: 5,
    };
    let rows = score(&mut ai, &[], &scorers, 0, dir.path(), &Silent).unwrap();
    let names: Vec<(&str, &str, usize)> = rows
        .iter()
        .map(|r| (r.explainer.as_str(), r.scorer.as_str(), r.n_features))
        .collect();
    // "rib" and "heart" fire wherever they occur: no hard negatives, so only feature 0
    // ("effusion", silent after "no") has a hard score
    assert_eq!(
        names,
        [("ngram", "embedding", 3), ("ngram", "embedding_hard", 1)]
    );
    let r = &rows[0];
    assert!(
        r.accuracy > 0.7 && r.ci_low <= r.accuracy && r.accuracy <= r.ci_high,
        "{r:?}"
    );
    assert_eq!(
        read_json::<Vec<ScoreRow>>(&dir.path().join(SCORES)).unwrap(),
        rows
    );
    let page = FeatureDb::open(&db).unwrap().feature(0).unwrap().unwrap();
    let s = &page.explanations[0].scores;
    assert_eq!(s[0].scorer, "embedding");
    assert_eq!(s[0].n_positive, s[0].n_negative + s[1].n_negative);
    assert!(s[0].n_positive >= 4, "{s:?}");
    assert_eq!(count(&db, "scores"), 4);
    let e = score(&mut ai, &["nope".into()], &scorers, 0, dir.path(), &Silent).unwrap_err();
    assert!(e.to_string().contains("no explanations by nope"), "{e}");
}

fn ctx(text: &str) -> Context {
    Context {
        doc: "d".into(),
        position: 0,
        tokens: text.split_inclusive(' ').map(String::from).collect(),
        activations: vec![0.0; text.split(' ').count()],
        focus: 0,
    }
}

#[test]
fn embedding_scorer_ranks_by_meaning_with_the_real_minilm() {
    let set = ScoringSet {
        positives: vec![
            ctx("small left pleural effusion"),
            ctx("fluid collecting around the lung base"),
            ctx("moderate bilateral effusions"),
        ],
        negatives: vec![
            (NegativeKind::Random, ctx("fracture of the seventh rib")),
            (NegativeKind::Hard, ctx("broken ribs on the right side")),
            (NegativeKind::Random, ctx("old healed clavicle fracture")),
        ],
    };
    let right = "pleural effusion: fluid around the lung";
    let (random, details) = embedding_score(minilm(), right, &set, NegativeKind::Random).unwrap();
    assert_eq!(
        (random.score, random.n_positive, random.n_negative),
        (1.0, 3, 2)
    );
    assert_eq!(details.texts.len(), 5);
    let (hard, _) = embedding_score(minilm(), right, &set, NegativeKind::Hard).unwrap();
    assert_eq!(
        (hard.scorer.as_str(), hard.score, hard.n_negative),
        ("embedding_hard", 1.0, 1)
    );
    // the explanation of the other feature ranks everything the other way round
    let wrong = "bone fractures of the ribs";
    let (wrong, _) = embedding_score(minilm(), wrong, &set, NegativeKind::Random).unwrap();
    assert_eq!(wrong.score, 0.0);
}

#[test]
fn mismatched_inputs_and_bad_features_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let refused = |t: Target, sel: Selection| -> String {
        match Autointerp::open(&t, &sel) {
            Ok(mut ai) => explain(
                &mut ai,
                &Explainer::Ngram(NgramConfig::default()),
                0,
                &Silent,
            )
            .unwrap_err()
            .to_string(),
            Err(e) => e.to_string(),
        }
    };
    let e = refused(target(&db), Selection::Listed(vec![0, 9]));
    assert!(
        e.contains("feature 9 is out of range") && e.contains("4 latents"),
        "{e}"
    );
    let e = refused(target(&db), Selection::Listed(vec![3]));
    assert!(e.contains("feature 3 never fired"), "{e}");
    // an SAE of the same width whose features read other coordinates
    let other = dir.path().join("other-sae");
    save_saelens(&sae([1, 0, 2, 3]), &other).unwrap();
    let e = refused(
        Target {
            sae: Some(other),
            ..target(&db)
        },
        Selection::Listed(vec![0]),
    );
    assert!(e.contains("another SAE or store"), "{e}");
    // an SAE of another width
    let wide = dir.path().join("wide-sae");
    let cfg = SaeConfig::plain(D, 8, Activation::TopK { k: 2 }).unwrap();
    save_saelens(&Sae::new(cfg, 1).unwrap(), &wide).unwrap();
    let e = refused(
        Target {
            sae: Some(wide),
            ..target(&db)
        },
        Selection::Listed(vec![0]),
    );
    assert!(e.contains("4 latents") && e.contains("has 8"), "{e}");
    assert_eq!(count(&db, "explanations"), 0);
}

/// `radlens lm serve` on a free loopback port in its own runtime; returns the base URL.
fn serve() -> String {
    let cfg = ServeConfig {
        max_tokens_limit: 64,
        default_max_tokens: 16,
        parallel: 2,
        ..ServeConfig::new("smollm2")
    };
    common::serve(Server::new(lm(), None, cfg).unwrap())
}

fn endpoint(base: &str, timeout: Duration) -> EndpointModel {
    let client = ChatClient::new(ClientConfig {
        timeout,
        max_retries: 0,
        ..ClientConfig::new(base)
    })
    .unwrap();
    EndpointModel {
        client,
        model: "smollm2".into(),
    }
}

#[test]
fn endpoint_explainer_and_judge_run_against_a_real_server_and_match_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let mut ai = Autointerp::open(&target(&db), &Selection::Listed(vec![0])).unwrap();
    let remote = endpoint(&serve(), Duration::from_secs(300));
    let explainer = Explainer::Llm {
        model: &remote,
        examples: 4,
        max_tokens: 12,
    };
    assert_eq!(explainer.name(), "llm:smollm2");
    explain(&mut ai, &explainer, 0, &Silent).unwrap();
    let page = FeatureDb::open(&db).unwrap().feature(0).unwrap().unwrap();
    let stored = page.explanations[0].text.clone();
    // greedy decoding: the served reply is the local model's own
    let local = LocalModel {
        lm: lm(),
        name: "local".into(),
    };
    let ex = radlens_interp::autointerp::contexts::LatentExamples::of(
        &page,
        // the examples are rebuilt from the store through a fresh index
        &radlens_interp::autointerp::contexts::StoreIndex::build(
            &sae([0, 1, 2, 3]),
            &ActivationStore::open(&dir.path().join("acts")).unwrap(),
            &[0],
            3,
        )
        .unwrap(),
        &db,
    )
    .unwrap();
    assert_eq!(llm::explain(&local, &ex.shown[..4], 12).unwrap(), stored);

    // detection and fuzzing by the served judge: balanced sets, every reply kept
    let scorers = Scorers {
        embedding: None,
        judge: Some(&remote),
        examples: 2,
        judge_batch: 2,
    };
    let rows = score(&mut ai, &[], &scorers, 0, dir.path(), &Silent).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.scorer.as_str()).collect();
    assert_eq!(names, ["detection", "fuzzing"]);
    let conn = Connection::open(&db).unwrap();
    let details: Vec<(i64, i64, String)> = conn
        .prepare("SELECT n_positive, n_negative, details FROM scores ORDER BY scorer")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for (p, n, d) in &details {
        assert_eq!((*p, *n), (2, 2));
        let d: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(d["judge"], "smollm2");
        assert_eq!(d["replies"].as_array().unwrap().len(), 2);
        assert_eq!(d["texts"].as_array().unwrap().len(), 4);
    }
}

/// A loopback server that answers each connection with `reply` (after reading the
/// request), or never answers when `reply` is `None`.
fn fake(reply: Option<&'static str>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = conn.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = conn.write_all(r.as_bytes());
                }
                None => held.push(conn),
            }
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn broken_endpoints_give_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let cases = [
        (fake(None), "no reply within"),
        (
            fake(Some(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"choices",
            )),
            "malformed JSON",
        ),
        (refused_port, "request failed"),
    ];
    for (url, expected) in cases {
        let mut ai = Autointerp::open(&target(&db), &Selection::Listed(vec![0, 1])).unwrap();
        let model = endpoint(&url, Duration::from_millis(500));
        let explainer = Explainer::Llm {
            model: &model,
            examples: 4,
            max_tokens: 8,
        };
        let e = explain(&mut ai, &explainer, 0, &Silent)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected) && e.contains(&url), "{expected}: {e}");
        assert_eq!(count(&db, "explanations"), 0);
    }
}

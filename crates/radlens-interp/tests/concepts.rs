//! Concept probes on a corpus and stores built here: a feature that fires only in
//! cardiomegaly reports is found, scored and stored.

use candle_core::{Device, Tensor};
use radlens_core::observe::Silent;
use radlens_core::results::read_json;
use radlens_interp::concepts::{
    probe_concepts, ConceptConfig, ConceptRequest, ConceptRow, Direction,
};
use radlens_interp::feature_db::FeatureDb;
use radlens_interp::features::{build_feature_db, FeatureConfig};
use radlens_report::CorpusSpec;
use radlens_sae::formats::save_saelens;
use radlens_sae::tokens::{TokenFilter, TokenPolicy};
use radlens_sae::{Activation, ActivationStore, Sae, SaeConfig, StoreMeta, TokenRecord};
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use std::path::Path;

const D: usize = 4;

/// Report `uid` has cardiomegaly when uid % 3 == 0.
fn cardiomegaly(uid: usize) -> bool {
    uid.is_multiple_of(3)
}

/// Reports `uids`, 6 tokens each; token 3 of a cardiomegaly report has coordinate 2 at 5.
fn store(dir: &Path, uids: std::ops::Range<usize>, rng: &mut impl Rng) {
    let mut store = ActivationStore::create(dir, StoreMeta::new(D, 0, "m")).unwrap();
    let (mut rows, mut records) = (Vec::new(), Vec::new());
    for uid in uids {
        for p in 0..6u32 {
            let mut row: Vec<f32> = (0..D).map(|_| rng.gen_range(0.0..1.0)).collect();
            if cardiomegaly(uid) && p == 3 {
                row[2] = 5.0;
            }
            rows.extend(row);
            records.push(TokenRecord {
                doc: uid.to_string(),
                position: p,
                token_id: p,
                text: "t".into(),
            });
        }
    }
    let n = records.len();
    let x = Tensor::from_vec(rows, (n, D), &Device::Cpu).unwrap();
    store.append_shard(&x, &records, (0, 1)).unwrap();
    store.finish().unwrap();
}

#[test]
fn the_feature_that_fires_on_cardiomegaly_is_found_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut csv = String::from("uid,MeSH,Problems,findings,impression\n");
    for uid in 0..90 {
        let problems = if cardiomegaly(uid) {
            "Cardiomegaly"
        } else {
            "normal"
        };
        csv += &format!("{uid},x,{problems},Report {uid}.,\n");
    }
    std::fs::create_dir(root.join("iu")).unwrap();
    std::fs::write(root.join("iu/indiana_reports.csv"), csv).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    store(&root.join("train"), 0..60, &mut rng);
    store(&root.join("held"), 60..90, &mut rng);
    // An identity SAE: feature i is coordinate i.
    let eye = Tensor::eye(D, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = |n| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let cfg = SaeConfig::plain(D, D, Activation::TopK { k: D }).unwrap();
    let sae = Sae::from_tensors(cfg, eye.clone(), zeros(D), eye, zeros(D), None, 1.0).unwrap();
    let sae_dir = root.join("sae");
    save_saelens(&sae, &sae_dir).unwrap();
    TokenFilter {
        policy: TokenPolicy::keep_all(),
        median_norm: 1.0,
    }
    .save(&sae_dir)
    .unwrap();
    // The SAE's feature database receives the table.
    let db = root.join("features.sqlite");
    let train_store = ActivationStore::open(&root.join("train")).unwrap();
    let provenance = [("sae", "identity".to_string())];
    build_feature_db(
        &sae,
        &train_store,
        &FeatureConfig::default(),
        &provenance,
        &db,
        &Silent,
    )
    .unwrap();
    let request = ConceptRequest {
        sae: sae_dir,
        train: root.join("train"),
        heldout: root.join("held"),
        corpus: Some(CorpusSpec {
            dir: root.join("iu"),
        }),
        feature_db: Some(db.clone()),
        out: root.to_path_buf(),
    };
    let rows = probe_concepts(&request, &ConceptConfig::default()).unwrap();
    let card = rows.iter().find(|r| r.finding == "cardiomegaly").unwrap();
    assert_eq!((card.n_positive, card.n_negative), (10, 20));
    assert_eq!((card.best_feature, card.auroc), (2, 1.0));
    assert_eq!((card.ci_low, card.ci_high), (1.0, 1.0));
    assert_eq!(card.direction, Direction::Fires);
    // "normal" is the complement: coordinate 2 separates it perfectly the other way, by
    // being silent in its reports...
    let normal = rows.iter().find(|r| r.finding == "normal").unwrap();
    assert_eq!(
        (normal.best_feature, normal.direction, normal.auroc),
        (2, Direction::Silent, 1.0)
    );
    assert_eq!(normal.top[0].train_auroc, 1.0);
    // ...so among features that fire with it the best is another one, near chance.
    let out = root.join("fires-only");
    let fires_only = ConceptConfig {
        fires_only: true,
        ..ConceptConfig::default()
    };
    let firing = probe_concepts(
        &ConceptRequest {
            out,
            feature_db: None,
            ..request.clone()
        },
        &fires_only,
    )
    .unwrap();
    let normal = firing.iter().find(|r| r.finding == "normal").unwrap();
    assert_ne!(normal.best_feature, 2);
    assert!(normal.top.iter().all(|f| f.direction == Direction::Fires));
    assert!(normal.ci_low < 0.9, "{normal:?}");
    // Findings without positives are left out.
    assert!(rows.iter().all(|r| r.finding != "pneumothorax"));
    assert_eq!(
        read_json::<Vec<ConceptRow>>(&root.join("concepts.json")).unwrap(),
        rows
    );
    let conn = Connection::open(&db).unwrap();
    let (latent, direction, auroc): (i64, String, f64) = conn
        .query_row(
            "SELECT latent, direction, heldout_auroc FROM concepts WHERE finding = 'normal' AND rank = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((latent, direction.as_str(), auroc), (2, "silent", 1.0));
    let page = FeatureDb::open(&db).unwrap().feature(2).unwrap().unwrap();
    let normal = page
        .concepts
        .iter()
        .find(|c| c.finding == "normal")
        .unwrap();
    assert_eq!((normal.direction.as_str(), normal.rank), ("silent", 0));
    // A table written before probes had a direction (firing features only) reads as such.
    conn.execute_batch("ALTER TABLE concepts DROP COLUMN direction")
        .unwrap();
    let page = FeatureDb::open(&db).unwrap().feature(2).unwrap().unwrap();
    assert!(page.concepts.iter().all(|c| c.direction == "fires"));

    // Overlapping stores are refused, and nothing is written to the database.
    let overlap = ConceptRequest {
        heldout: root.join("train"),
        ..request
    };
    conn.execute("DELETE FROM concepts", []).unwrap();
    let e = probe_concepts(&overlap, &ConceptConfig::default()).unwrap_err();
    assert!(e.to_string().contains("in both"), "{e}");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM concepts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

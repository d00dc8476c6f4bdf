//! A real server on loopback with a real SQLite file in a temporary folder, the shipped
//! model, and a small film made from JSRT's first image (never written into the repository).
#![allow(dead_code)] // each test binary uses part of this

pub mod webdriver;

use radlens_server::db::records::{Job, JobState};
use radlens_server::{Config, Running};
use reqwest::blocking::{multipart, Client, Response};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/jsrt-ssn")
}

/// Upload limit of the test servers.
pub const MAX_UPLOAD: usize = 4 << 20;

pub fn config(dir: &Path) -> Config {
    Config {
        db: dir.join("radlens.sqlite"),
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        model: model_dir(),
        samples: 8,
        seed: 0,
        max_upload: MAX_UPLOAD,
        session_ttl: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(120),
        secure_cookie: false,
        sae_runs: Vec::new(),
        lm_model: None,
    }
}

/// The accounts every test server has: (username, role); all share [`PASSWORD`].
pub const RADIOLOGIST: &str = "dr.test";
pub const RADIOLOGIST_2: &str = "dr.two";
pub const VIEWER: &str = "viewer";
pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "correct horse battery";

/// A server on a fresh database in `dir` (or the one already there) with the test accounts.
pub fn start(dir: &Path) -> Running {
    start_with(config(dir))
}

/// A server for `cfg`, with the test accounts.
pub fn start_with(cfg: Config) -> Running {
    {
        let db = radlens_server::db::Db::open(&cfg.db).expect("database opens");
        if radlens_server::db::accounts::users(&db.lock())
            .unwrap()
            .is_empty()
        {
            use radlens_server::db::accounts::Role;
            for (name, role) in [
                (RADIOLOGIST, Role::Radiologist),
                (RADIOLOGIST_2, Role::Radiologist),
                (VIEWER, Role::Viewer),
                (ADMIN, Role::Admin),
            ] {
                radlens_server::auth::add_user(&db, name, PASSWORD, role).unwrap();
            }
        }
    }
    Running::start(cfg).expect("server starts")
}

/// The words of every report in [`sae_run`]'s store; latent 2 fires on "enlarged" only.
pub const SAE_REPORT: [&str; 6] = ["The", " heart", " is", " enlarged", ".", " Lungs"];

/// The explanations [`sae_run`] stores: (latent, explainer, text, embedding score).
pub const SAE_EXPLANATIONS: [(usize, &str, &str, Option<f64>); 2] = [
    (2, "ngram", "the word \"enlarged\" (heart size)", Some(0.93)),
    (3, "ngram", "every token (100% of them)", None),
];

/// An activation store of `SAE_REPORT` three times (documents r0-r2), each token's row
/// given by `row(word, position)`.
fn report_store(
    store_dir: &Path,
    meta: radlens_sae::StoreMeta,
    mut row: impl FnMut(&str, usize) -> Vec<f32>,
) {
    use candle_core::{Device, Tensor};
    use radlens_sae::{ActivationStore, TokenRecord};
    let d = meta.d_model;
    let mut store = ActivationStore::create(store_dir, meta).unwrap();
    let (mut rows, mut records) = (Vec::new(), Vec::new());
    for doc in 0..3 {
        for (p, word) in SAE_REPORT.iter().enumerate() {
            rows.extend(row(word, p));
            records.push(TokenRecord {
                doc: format!("r{doc}"),
                position: p as u32,
                token_id: p as u32,
                text: word.to_string(),
            });
        }
    }
    let x = Tensor::from_vec(rows, (records.len(), d), &Device::Cpu).unwrap();
    store.append_shard(&x, &records, (0, 1)).unwrap();
    store.finish().unwrap();
}

/// An SAE run folder `<dir>/sae-test` with the feature database of an identity SAE over 4
/// coordinates, built from a hand-made store of 3 reports of [`SAE_REPORT`]: latent 0
/// never fires, latent 1 fires with the token's position / 2, latent 2 with 5 on
/// "enlarged", latent 3 with 1 everywhere; and [`SAE_EXPLANATIONS`]. The SAE is saved
/// beside its database.
pub fn sae_run(dir: &Path) -> PathBuf {
    use candle_core::{DType, Device, Tensor};
    use radlens_sae::{Activation, ActivationStore, Sae, SaeConfig, StoreMeta};
    const D: usize = 4;
    let store_dir = dir.join("sae-store");
    report_store(&store_dir, StoreMeta::new(D, 0, "m"), |word, p| {
        let enlarged = if word == " enlarged" { 5.0 } else { 0.0 };
        vec![0.0, p as f32 / 2.0, enlarged, 1.0]
    });
    let eye = Tensor::eye(D, DType::F32, &Device::Cpu).unwrap();
    let zeros = || Tensor::zeros(D, DType::F32, &Device::Cpu).unwrap();
    let cfg = SaeConfig::plain(D, D, Activation::TopK { k: D }).unwrap();
    let sae = Sae::from_tensors(cfg, eye.clone(), zeros(), eye, zeros(), None, 1.0).unwrap();
    let run = dir.join("sae-test");
    radlens_sae::formats::save_saelens(&sae, &run).unwrap();
    let store = ActivationStore::open(&store_dir).unwrap();
    radlens_interp::features::build_feature_db(
        &sae,
        &store,
        &radlens_interp::features::FeatureConfig::default(),
        &[("model", "m".to_string())],
        &run.join(radlens_server::features::FEATURE_DB),
        &|_: &radlens_core::observe::Count| {},
    )
    .unwrap();
    use radlens_interp::autointerp::db::{AutointerpDb, ExplanationScore};
    let mut db = AutointerpDb::open(&run.join(radlens_server::features::FEATURE_DB)).unwrap();
    for (latent, explainer, text, score) in SAE_EXPLANATIONS {
        db.put_explanation(latent, explainer, text, &[]).unwrap();
        if let Some(score) = score {
            let s = ExplanationScore {
                scorer: "embedding".into(),
                score,
                n_positive: 3,
                n_negative: 15,
            };
            db.put_score(latent, explainer, &s, &()).unwrap();
        }
    }
    run
}

/// A client without a session.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Sign in as `user`: the session cookie and CSRF token from the login answer.
pub fn session(s: &Running, user: &str) -> (String, radlens_server::auth::Me) {
    let r = client()
        .post(s.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "login as {user}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let token = cookie.split(';').next().unwrap().to_string();
    (token, r.json().unwrap())
}

/// A client signed in as `user` that sends its cookie and CSRF token with every request.
pub fn login(s: &Running, user: &str) -> Client {
    let (cookie, me) = session(s, user);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("cookie", cookie.parse().unwrap());
    h.insert("x-csrf-token", me.csrf_token.parse().unwrap());
    Client::builder()
        .timeout(Duration::from_secs(120))
        .default_headers(h)
        .build()
        .unwrap()
}

/// JSRT's JPCLN001 downscaled to `side` x `side`, as 8-bit grey PNG bytes, with its pixels.
pub fn small_film(side: u32) -> (Vec<u8>, image::GrayImage) {
    let src = radlens_testdata::shared_dir().join("data/jsrt/images/JPCLN001.png");
    let img = image::open(&src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .into_luma8();
    let small = image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
    let mut png = std::io::Cursor::new(Vec::new());
    small.write_to(&mut png, image::ImageFormat::Png).unwrap();
    (png.into_inner(), small)
}

pub fn upload(
    c: &Client,
    s: &Running,
    bytes: Vec<u8>,
    file_name: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    c.post(s.url("/api/studies"))
        .multipart(form)
        .send()
        .unwrap()
}

/// Poll a job until it finishes (a guard against hanging, not a timing assertion).
pub fn wait_job(c: &Client, s: &Running, id: i64) -> Job {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j: Job = c
            .get(s.url(&format!("/api/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!((0.0..=1.0).contains(&j.progress), "{j:?}");
        if matches!(j.state, JobState::Done | JobState::Failed) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {j:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The real SmolLM2 GGUF the steering tests load.
pub fn smollm2() -> PathBuf {
    radlens_testdata::shared_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// SmolLM2's residual width.
pub const SMOLLM2_WIDTH: usize = 576;

/// A run folder `<dir>/<name>` that fits SmolLM2 at `layer`: an SAE of `latents` random
/// unit-norm directions with tied encoder (ReLU, seeded), saved as `radlens sae train`
/// saves it, and its feature database over a store of 3 reports of [`SAE_REPORT`] whose
/// residuals are seeded noise plus 4 x latent 1's direction on " enlarged", so latent 1's
/// top examples are " enlarged".
pub fn smollm2_sae_run(dir: &Path, name: &str, latents: usize, layer: usize) -> PathBuf {
    use radlens_sae::{Activation, ActivationStore, Sae, SaeConfig, StoreMeta};
    use rand::{Rng, SeedableRng};
    const D: usize = SMOLLM2_WIDTH;
    let cfg = SaeConfig::plain(
        D,
        latents,
        Activation::Relu {
            l1_coefficient: 0.0,
        },
    )
    .unwrap();
    let sae = Sae::new(cfg, 3).unwrap();
    let dir1: Vec<f32> = sae.w_dec().get(1).unwrap().to_vec1().unwrap();
    let model = smollm2()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let store_dir = dir.join(format!("{name}-store"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    report_store(
        &store_dir,
        StoreMeta::new(D, layer, model.clone()),
        |word, _| {
            let planted = if word == " enlarged" { 4.0 } else { 0.0 };
            dir1.iter()
                .map(|v| 0.1 * (rng.gen::<f32>() - 0.5) + planted * v)
                .collect()
        },
    );
    let run = dir.join(name);
    radlens_sae::formats::save_saelens(&sae, &run).unwrap();
    radlens_interp::features::build_feature_db(
        &sae,
        &ActivationStore::open(&store_dir).unwrap(),
        &radlens_interp::features::FeatureConfig::default(),
        &[("model", model), ("layer", layer.to_string())],
        &run.join(radlens_server::features::FEATURE_DB),
        &|_: &radlens_core::observe::Count| {},
    )
    .unwrap();
    run
}

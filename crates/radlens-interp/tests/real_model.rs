//! Harvesting, splicing and feature databases against the real SmolLM2 GGUF and IU X-ray
//! reports in `../shared`.

use candle_core::{Device, Tensor};
use radlens_core::Silent;
use radlens_interp::features::{build_feature_db, FeatureConfig};
use radlens_interp::harvest::{harvest, HarvestConfig};
use radlens_interp::splice::{splice_metrics, SpliceConfig};
use radlens_interp::window::{Template, WindowSpec, Windower, REPORT_REQUEST};
use radlens_lm::{HookPoint, Hooks, LanguageModel, WeightFormat};
use radlens_report::{read_iu_xray, Report, ReportPart, ReportSplit};
use radlens_sae::tokens::{TokenFilter, TokenPolicy};
use radlens_sae::{Activation, ActivationStore, Sae, SaeConfig, StoreMeta, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const LAYER: usize = 15;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// The model is loaded once and shared by all tests, which run at the same time.
fn lm() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| {
        let path = shared().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        LanguageModel::load(path, &Device::Cpu, WeightFormat::F32).unwrap()
    })
}

fn reports(n: usize) -> Vec<Report> {
    let mut r = read_iu_xray(&shared().join("data/iu-xray")).unwrap();
    r.truncate(n);
    r
}

fn config(template: Template, context: usize, shard_tokens: usize) -> HarvestConfig {
    HarvestConfig {
        corpus: "iu-xray:test".into(),
        part: ReportPart::All,
        split: ReportSplit {
            heldout_fraction: 0.0,
            seed: 0,
            deduplicate: false,
        },
        layer: LAYER,
        window: WindowSpec {
            template,
            context_tokens: context,
            shots: 0,
        },
        shard_tokens,
        max_reports: None,
    }
}

fn splice(cfg: &HarvestConfig, workers: usize) -> SpliceConfig {
    SpliceConfig {
        layer: cfg.layer,
        windower: Windower::new(lm(), &cfg.window, &[]).unwrap(),
        tokens: TokenFilter {
            policy: TokenPolicy::keep_all(),
            median_norm: 1.0,
        },
        max_tokens: None,
        workers,
    }
}

fn all_rows(store: &ActivationStore) -> Vec<Vec<f32>> {
    (0..store.shards().len())
        .flat_map(|i| store.read_shard(i).unwrap().to_vec2::<f32>().unwrap())
        .collect()
}

fn all_tokens(store: &ActivationStore) -> Vec<radlens_sae::TokenRecord> {
    (0..store.shards().len())
        .flat_map(|i| store.read_shard_with_tokens(i).unwrap().1)
        .collect()
}

#[test]
fn harvest_stores_report_tokens_only_in_parallel_and_resumes() {
    let lm = lm();
    let reports = reports(6);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Template::Raw, 40, 100);
    let run = |out: &Path, workers| {
        harvest(lm, "smollm2", &reports, &cfg, out, workers, &Silent).unwrap()
    };
    let a = dir.path().join("a");
    let summary = run(&a, 2);
    let store = ActivationStore::open(&a).unwrap();
    assert!(store.shards().len() > 1, "100-token shards");
    assert_eq!(summary.tokens, store.rows());
    assert_eq!(store.meta.hook.as_deref(), Some("resid_post.15"));

    // One row per report token: no BOS or template token, positions count from 0.
    let tokens = all_tokens(&store);
    let mut expected = Vec::new();
    for r in &reports {
        let ids = lm.tokenizer.encode_text(&r.text()).unwrap();
        expected.extend(
            ids.iter()
                .enumerate()
                .map(|(i, &id)| (r.uid.clone(), i as u32, id)),
        );
    }
    let got: Vec<_> = tokens
        .iter()
        .map(|t| (t.doc.clone(), t.position, t.token_id))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(tokens[0].text, "The");
    assert_eq!(tokens[1].text, " cardiac");

    // Rows equal the model's residual with the report after <|endoftext|> (SmolLM2's BOS
    // is <|im_start|>, a chat-turn opener), in its 40-token window.
    let first = &reports[0];
    let ids = lm.tokenizer.encode_text(&first.text()).unwrap();
    let mut input = vec![lm.tokenizer.token_id("<|endoftext|>").unwrap()];
    input.extend(&ids[40..ids.len().min(80)]);
    let x = lm
        .model
        .residual_at(&input, HookPoint::ResidPost(LAYER), &mut Hooks::new())
        .unwrap();
    let rows = all_rows(&store);
    // The harvest runs the window after the separator's cached keys and values: equal up to
    // rounding.
    let want = x.get(1).unwrap().to_vec1::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (g, w) in rows[40].iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * scale, "{g} vs {w}");
    }

    // One worker gives the same store.
    let b = dir.path().join("b");
    run(&b, 1);
    let store_b = ActivationStore::open(&b).unwrap();
    assert_eq!(all_rows(&store_b), rows);
    assert_eq!(all_tokens(&store_b), tokens);

    // Interrupted after the first shard: the rerun resumes and ends identical.
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let mut meta: StoreMeta =
        serde_json::from_str(&std::fs::read_to_string(a.join("meta.json")).unwrap()).unwrap();
    meta.complete = false;
    std::fs::write(c.join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
    std::fs::copy(
        a.join("acts_00000.safetensors"),
        c.join("acts_00000.safetensors"),
    )
    .unwrap();
    assert!(
        ActivationStore::open(&c).is_err(),
        "unfinished stores are not read"
    );
    let resumed = run(&c, 2);
    assert!(resumed.resumed_after_reports > 0);
    let store_c = ActivationStore::open(&c).unwrap();
    assert_eq!(all_rows(&store_c), rows);
    assert_eq!(all_tokens(&store_c), tokens);

    // Other settings into the same store, or a layer the model lacks: clear errors.
    let other = config(Template::Chat, 40, 100);
    let err = harvest(lm, "smollm2", &reports, &other, &a, 1, &Silent).unwrap_err();
    assert!(err.to_string().contains("another harvest"), "{err}");
    let deep = HarvestConfig {
        layer: 30,
        ..cfg.clone()
    };
    let err = harvest(
        lm,
        "smollm2",
        &reports,
        &deep,
        &dir.path().join("d"),
        1,
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("resid_post.30"), "{err}");
}

#[test]
fn chat_and_reply_template_tokens_are_run_but_not_stored() {
    let lm = lm();
    let reports = reports(2);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    harvest(
        lm,
        "smollm2",
        &reports,
        &config(Template::Raw, 256, 10_000),
        &raw,
        1,
        &Silent,
    )
    .unwrap();
    let raw = ActivationStore::open(&raw).unwrap();
    let n: usize = reports
        .iter()
        .map(|r| lm.tokenizer.encode_text(&r.text()).unwrap().len())
        .sum();
    let special = lm.tokenizer.special_ids().to_vec();
    let mut first_rows = vec![all_rows(&raw)[0].clone()];
    for (template, prefix_end) in [
        (Template::Chat, "<|im_start|>user\n".to_string()),
        (
            Template::Reply,
            format!("{REPORT_REQUEST}<|im_end|>\n<|im_start|>assistant\n"),
        ),
    ] {
        let out = dir.path().join(format!("{template:?}"));
        harvest(
            lm,
            "smollm2",
            &reports,
            &config(template, 256, 10_000),
            &out,
            1,
            &Silent,
        )
        .unwrap();
        let store = ActivationStore::open(&out).unwrap();
        let prefix = store.meta.context_prefix.clone().unwrap();
        assert!(
            prefix.text.ends_with(&prefix_end),
            "{template:?}: {prefix:?}"
        );
        let tokens = all_tokens(&store);
        assert!(tokens.iter().all(|t| !special.contains(&t.token_id)));
        assert_eq!(tokens.len(), n, "{template:?}");
        // The rows differ from every other template's: the prefix was in context.
        let first = all_rows(&store)[0].clone();
        assert!(first_rows.iter().all(|r| *r != first), "{template:?}");
        first_rows.push(first);
    }
}

#[test]
fn splice_metrics_bracket_identity_and_zero_saes() {
    let lm = lm();
    let reports = reports(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Template::Raw, 256, 10_000);
    harvest(lm, "smollm2", &reports, &cfg, dir.path(), 2, &Silent).unwrap();
    let store = ActivationStore::open(dir.path()).unwrap();
    let x = store.read_shard(0).unwrap();
    let d = x.dim(1).unwrap();

    // A quickly trained SAE recovers part of the loss: between zero-ablation and clean.
    let sae_cfg = SaeConfig::matryoshka(d, 2 * d, 16).unwrap();
    let mut t = Trainer::new(sae_cfg, TrainConfig::default(), &x).unwrap();
    for _ in 0..30 {
        t.step(&x).unwrap();
    }
    let sae = Arc::new(t.into_sae());
    let m = splice_metrics(lm, sae.clone(), &splice(&cfg, 2), &reports, &Silent).unwrap();
    let n: usize = reports
        .iter()
        .map(|r| lm.tokenizer.encode_text(&r.text()).unwrap().len() - 1)
        .sum();
    assert_eq!(
        m.tokens, n,
        "one prediction per report token after the first"
    );
    assert!(m.ce_clean < m.ce_zero_ablation, "{m:?}");
    assert!(
        m.kl_zero_ablation > m.kl_spliced && m.kl_spliced > 0.0,
        "{m:?}"
    );
    assert!(
        (m.ce_loss_recovered
            - (m.ce_zero_ablation - m.ce_spliced) / (m.ce_zero_ablation - m.ce_clean))
            .abs()
            < 1e-12
    );
    assert_eq!(
        (m.delta_ce, m.noise_delta_ce),
        (m.ce_spliced - m.ce_clean, m.ce_noise - m.ce_clean)
    );
    assert!(m.kl_noise > 0.0, "{m:?}");
    for (delta, (lo, hi)) in [
        (m.delta_ce, m.delta_ce_ci95),
        (m.noise_delta_ce, m.noise_delta_ce_ci95),
    ] {
        assert!(lo <= delta && delta <= hi && lo < hi, "{m:?}");
    }
    let per_position: usize = m.per_position.iter().map(|p| p.tokens).sum();
    assert_eq!(per_position, m.tokens);
    assert_eq!(m.token_counts.kept, n + reports.len());

    // A filter that keeps no token edits nothing: every run is the clean one.
    let mut none = splice(&cfg, 2);
    none.tokens.policy.min_position = 10_000;
    let m = splice_metrics(lm, sae.clone(), &none, &reports, &Silent).unwrap();
    assert_eq!(
        (m.ce_spliced, m.ce_noise, m.ce_zero_ablation),
        (m.ce_clean, m.ce_clean, m.ce_clean)
    );
    assert_eq!(m.token_counts.early_position, n + reports.len());

    // The clean loss of the first report, after the document separator the store records,
    // equals the model's own next-token loss.
    let prefix = store.meta.context_prefix.clone().unwrap();
    assert_eq!(prefix.text, "<|endoftext|>");
    assert_eq!(
        prefix.ids,
        [lm.tokenizer.token_id("<|endoftext|>").unwrap()]
    );
    assert_ne!(Some(prefix.ids[0]), lm.tokenizer.bos_id());
    let ids = {
        let mut v = prefix.ids.clone();
        v.extend(lm.tokenizer.encode_text(&reports[0].text()).unwrap());
        v
    };
    let logits = lm
        .model
        .forward(&ids, &mut lm.model.new_cache(), &mut Hooks::new())
        .unwrap();
    let lsm = candle_nn_free_log_softmax(&logits);
    let ce: f64 = (1..ids.len() - 1)
        .map(|p| -lsm[p][ids[p + 1] as usize])
        .sum::<f64>()
        / (ids.len() - 2) as f64;
    let one = splice_metrics(lm, sae, &splice(&cfg, 1), &reports[..1], &Silent).unwrap();
    // The splice runs the report after the prefix's cached keys and values, computed in a
    // run of their own: the same sums, rounded differently in the last bits.
    assert!((one.ce_clean - ce).abs() < 1e-5, "{} vs {ce}", one.ce_clean);

    // An SAE of another width is refused.
    let narrow = Trainer::new(
        SaeConfig::matryoshka(8, 64, 2).unwrap(),
        TrainConfig::default(),
        &Tensor::ones((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap()
    .into_sae();
    let err =
        splice_metrics(lm, Arc::new(narrow), &splice(&cfg, 2), &reports, &Silent).unwrap_err();
    assert!(err.to_string().contains("8-wide"), "{err}");
}

/// Log-softmax of each row, computed independently of the crate (f64).
fn candle_nn_free_log_softmax(logits: &Tensor) -> Vec<Vec<f64>> {
    logits
        .to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            row.iter().map(|&v| v as f64 - m - z.ln()).collect()
        })
        .collect()
}

#[test]
fn feature_database_holds_every_latent_and_its_examples() {
    let lm = lm();
    let reports = reports(4);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Template::Raw, 256, 10_000);
    harvest(
        lm,
        "smollm2",
        &reports,
        &cfg,
        &dir.path().join("acts"),
        2,
        &Silent,
    )
    .unwrap();
    let store = ActivationStore::open(&dir.path().join("acts")).unwrap();
    let x = store.read_shard(0).unwrap();
    let d = x.dim(1).unwrap();
    let mut t = Trainer::new(
        SaeConfig::matryoshka(d, 64, 4).unwrap(),
        TrainConfig::default(),
        &x,
    )
    .unwrap();
    t.step(&x).unwrap();
    let sae = t.into_sae();
    let db = dir.path().join("features.sqlite");
    let fcfg = FeatureConfig {
        top_examples: 3,
        quantiles: 2,
        per_quantile: 1,
        context: 2,
        ..FeatureConfig::default()
    };
    let summary = build_feature_db(
        &sae,
        &store,
        &fcfg,
        &[("model", "smollm2".into())],
        &db,
        &Silent,
    )
    .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |q: &str| -> i64 { conn.query_row(q, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM latents"), 64);
    assert_eq!(
        count("SELECT COUNT(*) FROM latents WHERE fires > 0") as usize,
        summary.alive
    );
    // Codes per token average k = 4 (batch top-k on the single training batch).
    let fires = count("SELECT SUM(fires) FROM latents") as f64 / store.rows() as f64;
    assert!((fires - 4.0).abs() < 1e-9, "{fires}");
    assert_eq!(
        count("SELECT COUNT(*) FROM examples") as usize,
        summary.examples
    );
    // The first group holds 64/32 = 2 latents.
    assert_eq!(
        count("SELECT COUNT(*) FROM latents WHERE matryoshka_group = 0"),
        2
    );
    // A top example's activation equals its latent's max, and its token is at `focus`.
    let (latent, act, token, context, focus): (i64, f64, String, String, i64) = conn
        .query_row(
            "SELECT latent, activation, token, context, focus FROM examples \
             WHERE kind = 'top' AND rank = 0 ORDER BY latent LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    let max: f64 = conn
        .query_row(
            "SELECT max_activation FROM latents WHERE id = ?1",
            [latent],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(act, max);
    let context: Vec<String> = serde_json::from_str(&context).unwrap();
    assert_eq!(context[focus as usize], token);
    assert!(context.len() <= 5);
    assert_eq!(
        conn.query_row("SELECT value FROM meta WHERE key = 'model'", [], |r| r
            .get::<_, String>(
            0
        ))
        .unwrap(),
        "smollm2"
    );
}

/// An SAE whose reconstruction is exactly its input: latents `relu(x)` and `relu(-x)`
/// decoded by `+I` and `-I`, with an activation scale of 4 (a power of two, so scaling
/// and unscaling are exact) that must be undone.
fn identity_sae(d: usize) -> Sae {
    let eye = Tensor::eye(d, candle_core::DType::F32, &Device::Cpu).unwrap();
    let w_enc = Tensor::cat(&[&eye, &eye.neg().unwrap()], 1).unwrap();
    let w_dec = w_enc.t().unwrap().contiguous().unwrap();
    let zeros = |n| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let cfg = SaeConfig::plain(
        d,
        2 * d,
        Activation::Relu {
            l1_coefficient: 0.0,
        },
    )
    .unwrap();
    Sae::from_tensors(cfg, w_enc, zeros(2 * d), w_dec, zeros(d), None, 4.0).unwrap()
}

#[test]
fn splicing_an_identity_sae_reproduces_the_clean_loss_exactly() {
    let lm = lm();
    let reports = reports(3);
    let cfg = config(Template::Raw, 256, 10_000);
    let d = lm.model.config().hidden_size;
    let sae = Arc::new(identity_sae(d));
    let x = Tensor::randn(0f32, 3.0, (5, d), &Device::Cpu).unwrap();
    let back = sae.decode(&sae.encode(&x).unwrap()).unwrap();
    assert_eq!(
        back.to_vec2::<f32>().unwrap(),
        x.to_vec2::<f32>().unwrap(),
        "the identity SAE reconstructs exactly"
    );
    let m = splice_metrics(lm, sae, &splice(&cfg, 2), &reports, &Silent).unwrap();
    assert!(m.token_counts.kept > 0);
    assert_eq!(m.ce_spliced, m.ce_clean, "{m:?}");
    assert_eq!(m.delta_ce_ci95, (0.0, 0.0));
    assert_eq!(m.kl_spliced, 0.0);
    // The SAE error is zero, so the matched noise is too.
    assert_eq!(m.ce_noise, m.ce_clean);
    // Zeroing the layer's output is far worse.
    assert!(m.ce_zero_ablation > m.ce_clean + 2.0, "{m:?}");
}

/// SmolLM2's output embedding (tied to `token_embd`) and final norm gain, read from the
/// GGUF apart from the model.
fn unembedding() -> (Vec<Vec<f32>>, Vec<f32>) {
    use radlens_lm::GgufFile;
    let path = shared().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut gguf = GgufFile::open(&path).unwrap();
    assert!(
        !gguf.has_tensor("output.weight"),
        "SmolLM2 ties its output embedding to token_embd"
    );
    let embd: Vec<Vec<f32>> = gguf
        .tensor("token_embd.weight", &Device::Cpu)
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec2()
        .unwrap();
    let gain: Vec<f32> = gguf
        .tensor("output_norm.weight", &Device::Cpu)
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap();
    (embd, gain)
}

/// A randomly initialised SAE of `features` latents at [`LAYER`].
fn random_sae(features: usize, seed: u64) -> radlens_interp::steer::HookedSae {
    let d = lm().model.config().hidden_size;
    let cfg = SaeConfig::plain(d, features, Activation::TopK { k: 2 }).unwrap();
    radlens_interp::steer::HookedSae {
        sae: Arc::new(Sae::new(cfg, seed).unwrap()),
        layer: LAYER,
        filter: TokenFilter {
            policy: TokenPolicy::default(),
            median_norm: 1.0,
        },
    }
}

/// logit = sum_j dir_j * gain_j * embd_j, in f64.
fn naive_logit(embd: &[f32], dir: &[f32], gain: &[f32]) -> f64 {
    embd.iter()
        .zip(dir)
        .zip(gain)
        .map(|((e, x), g)| f64::from(*e) * f64::from(*x) * f64::from(*g))
        .sum()
}

/// The decoder logits of a feature against a naive sum over the GGUF's own tensors (read
/// apart from the model): logit(v) = sum_j dir_j * gain_j * token_embd[v, j].
#[test]
fn decoder_logits_match_a_naive_product_with_the_token_embeddings() {
    use radlens_interp::decoder_logits::decoder_logits;
    let (embd, gain) = unembedding();
    let hooked = random_sae(8, 11);
    let feature = 5;
    let got = decoder_logits(lm(), &hooked, feature, 10).unwrap();
    let dir: Vec<f32> = hooked.direction(feature).unwrap().to_vec1().unwrap();
    let naive: Vec<f64> = embd
        .iter()
        .map(|row| naive_logit(row, &dir, &gain))
        .collect();
    let mut order: Vec<usize> = (0..naive.len()).collect();
    order.sort_by(|&a, &b| naive[b].total_cmp(&naive[a]));
    let check = |list: &[radlens_interp::decoder_logits::TokenLogit], want: &[usize]| {
        assert_eq!(list.len(), 10);
        // rank by rank: the token's own naive logit, and the naive logit of that rank
        // (so near-ties may swap places without failing)
        for (t, &id) in list.iter().zip(want) {
            let own = naive[t.token_id as usize];
            assert!((t.logit - own).abs() < 1e-4, "{t:?} vs {own}");
            assert!(
                (t.logit - naive[id]).abs() < 1e-4,
                "{t:?} vs rank value {}",
                naive[id]
            );
            assert_eq!(
                t.token,
                lm().tokenizer.decode(&[t.token_id], false).unwrap()
            );
        }
    };
    check(&got.top, &order[..10]);
    let lowest: Vec<usize> = order.iter().rev().take(10).copied().collect();
    check(&got.bottom, &lowest);
    assert!(got.top[0].logit > 0.0 && got.bottom[0].logit < 0.0);
}

/// The features promoting some tokens against the naive logits of every feature's
/// direction; more features than one chunk of the computation.
#[test]
fn features_promoting_tokens_rank_every_feature_by_its_naive_mean_logit() {
    use radlens_interp::decoder_logits::features_promoting;
    let (embd, gain) = unembedding();
    let hooked = random_sae(300, 3);
    let tokens = [745u32, 21096];
    let got = features_promoting(lm(), &hooked, &tokens, 7).unwrap();
    let naive: Vec<f64> = (0..300)
        .map(|f| {
            let dir: Vec<f32> = hooked.direction(f).unwrap().to_vec1().unwrap();
            tokens
                .iter()
                .map(|&t| naive_logit(&embd[t as usize], &dir, &gain))
                .sum::<f64>()
                / tokens.len() as f64
        })
        .collect();
    let mut order: Vec<usize> = (0..300).collect();
    order.sort_by(|&a, &b| naive[b].total_cmp(&naive[a]));
    assert_eq!(got.len(), 7);
    for (g, &want) in got.iter().zip(&order) {
        assert!((g.logit - naive[g.feature]).abs() < 1e-4, "{g:?}");
        assert!(
            (g.logit - naive[want]).abs() < 1e-4,
            "{g:?} vs {}",
            naive[want]
        );
    }
    let vocab = lm().tokenizer.vocab_size() as u32;
    let err = features_promoting(lm(), &hooked, &[vocab], 3).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    assert!(features_promoting(lm(), &hooked, &[], 3).is_err());
}

#[test]
fn a_few_shot_prefix_holds_the_examples_and_its_cache_equals_running_it_whole() {
    let lm = lm();
    let r = reports(3);
    let spec = WindowSpec {
        template: Template::Reply,
        context_tokens: 256,
        shots: 2,
    };
    let shots = [r[0].text(), r[1].text()];
    let windower = Windower::new(lm, &spec, &shots).unwrap();
    let text = lm.tokenizer.decode(windower.prefix(), false).unwrap();
    let turn = |role: &str, body: &str| format!("<|im_start|>{role}\n{body}<|im_end|>\n");
    let want = format!(
        "{}{}{}{}{}{}<|im_start|>assistant\n",
        turn("system", lm.chat.default_system().unwrap()),
        turn("user", REPORT_REQUEST),
        turn("assistant", &shots[0]),
        turn("user", REPORT_REQUEST),
        turn("assistant", &shots[1]),
        turn("user", REPORT_REQUEST),
    );
    assert_eq!(text, want);

    // A window's report tokens fed after the cached prefix give what the whole window gives.
    let w = &windower.windows(lm, &r[2].text()).unwrap()[0];
    let point = HookPoint::ResidPost(LAYER);
    let whole = lm
        .model
        .residual_at(&w.ids, point, &mut Hooks::new())
        .unwrap()
        .narrow(0, w.content_start, w.content().len())
        .unwrap();
    let cached = lm
        .model
        .residual_after(
            windower.prefix_cache(),
            w.content(),
            point,
            &mut Hooks::new(),
        )
        .unwrap();
    let gap = |a: &Tensor, b: &Tensor| -> f32 {
        let scale = a
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        diff.to_scalar::<f32>().unwrap() / scale
    };
    assert!(gap(&whole, &cached) < 1e-5, "{}", gap(&whole, &cached));
    let logits_whole = lm
        .model
        .forward(&w.ids, &mut lm.model.new_cache(), &mut Hooks::new())
        .unwrap()
        .narrow(0, w.content_start, w.content().len())
        .unwrap();
    let logits_cached = lm
        .model
        .forward(
            w.content(),
            &mut windower.prefix_cache().clone(),
            &mut Hooks::new(),
        )
        .unwrap();
    assert!(gap(&logits_whole, &logits_cached) < 1e-5);
    // The shared cache is not advanced by the windows run after it.
    assert_eq!(windower.prefix_cache().position(), windower.prefix().len());

    // Examples and template must agree.
    let err = Windower::new(lm, &spec, &shots[..1]).unwrap_err();
    assert!(err.to_string().contains("1 example reports"), "{err}");
    let raw = WindowSpec {
        template: Template::Raw,
        ..spec
    };
    let err = Windower::new(lm, &raw, &shots).unwrap_err();
    assert!(err.to_string().contains("reply template only"), "{err}");

    // A harvest reads its examples from the corpus' training part and records the prefix.
    let mut cfg = config(Template::Reply, 256, 10_000);
    cfg.window.shots = 2;
    cfg.corpus = format!("iu-xray:{}", shared().join("data/iu-xray").display());
    cfg.split = ReportSplit {
        heldout_fraction: 0.1,
        seed: 0,
        deduplicate: true,
    };
    let dir = tempfile::tempdir().unwrap();
    harvest(lm, "smollm2", &r[2..], &cfg, dir.path(), 1, &Silent).unwrap();
    let store = ActivationStore::open(dir.path()).unwrap();
    let recorded = store.meta.context_prefix.clone().unwrap();
    let expected = cfg.windower(lm, &cfg.corpus.parse().unwrap()).unwrap();
    assert_eq!(recorded.ids, expected.prefix());
    assert_eq!(all_tokens(&store).len(), w.content().len());
}

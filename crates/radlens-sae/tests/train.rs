//! Training behaviour: learning on synthetic sparse data, exact resume, errors.

mod common;

use candle_core::{Device, Tensor};
use common::{quick_train_config, Synthetic};
use radlens_sae::metrics::{evaluate, fvu, PositionedBatch};
use radlens_sae::tokens::{TokenFilter, TokenPolicy};
use radlens_sae::{project_decoder_grad, Activation, SaeConfig, SaeError, Trainer};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn keep_all() -> TokenFilter {
    TokenFilter {
        policy: TokenPolicy::keep_all(),
        median_norm: 1.0,
    }
}

#[test]
fn training_on_sparse_synthetic_data_reaches_low_fvu() {
    // 32 random unit atoms in 32 dimensions, 4 active per token.
    for cfg in [
        SaeConfig::matryoshka(32, 64, 4).unwrap(),
        SaeConfig::plain(32, 64, Activation::BatchTopK { k: 4 }).unwrap(),
        SaeConfig::plain(32, 64, Activation::TopK { k: 4 }).unwrap(),
    ] {
        let mut data = Synthetic::new(32, 32, 4, 1);
        let calibration = data.batch(256);
        let mut trainer = Trainer::new(cfg.clone(), quick_train_config(), &calibration).unwrap();
        for _ in 0..300 {
            assert!(trainer.step(&data.batch(256)).unwrap().loss.is_finite());
        }
        assert_eq!(trainer.steps_done(), 300);
        let eval: Vec<_> = (0..4)
            .map(|_| {
                Ok(PositionedBatch {
                    x: data.batch(256),
                    positions: vec![5; 256],
                })
            })
            .collect();
        let m = evaluate(trainer.sae(), &keep_all(), eval).unwrap();
        assert_eq!(m.fvu, m.fvu_all_tokens);
        assert_eq!(m.token_counts.kept, 1024);
        assert!(m.fvu < 0.1, "{cfg:?}: {m:?}");
        assert_eq!(m.fvu_per_prefix.len(), cfg.group_sizes.len());
        // Nested prefixes explain more and more variance.
        assert!(
            m.fvu_per_prefix.windows(2).all(|w| w[1] <= w[0] + 1e-9),
            "{m:?}"
        );
        assert!(m.l0 > 1.0 && m.l0 < 12.0, "{m:?}");
        if matches!(cfg.activation, Activation::BatchTopK { .. }) {
            assert!(trainer.sae().threshold().is_some_and(|t| t > 0.0));
        }
    }
}

#[test]
fn resume_gives_the_same_next_step_as_uninterrupted_training() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt.safetensors");
    let mut data = Synthetic::new(16, 32, 3, 2);
    let batches: Vec<Tensor> = (0..10).map(|_| data.batch(64)).collect();
    let mut cfg = quick_train_config();
    cfg.dead_after_tokens = 128; // AuxK and the threshold EMA are both active
    cfg.threshold_start_step = 2;
    let mut a = Trainer::new(SaeConfig::matryoshka(16, 32, 3).unwrap(), cfg, &batches[0]).unwrap();
    for batch in &batches[..6] {
        a.step(batch).unwrap();
    }
    a.save_checkpoint(&ckpt).unwrap();
    let mut b = Trainer::resume(&ckpt).unwrap();
    assert_eq!(b.steps_done(), 6);
    assert_eq!(b.tokens_since_fired(), a.tokens_since_fired());
    assert_eq!(b.sae().threshold(), a.sae().threshold());
    for batch in &batches[6..] {
        let (sa, sb) = (a.step(batch).unwrap(), b.step(batch).unwrap());
        assert_eq!(sa.loss, sb.loss);
        assert_eq!(sa.aux_loss, sb.aux_loss);
    }
    let eq = |x: &Tensor, y: &Tensor| {
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert!(eq(a.sae().w_dec(), b.sae().w_dec()) && eq(a.sae().b_enc(), b.sae().b_enc()));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn non_finite_loss_stops_with_the_step() {
    let mut data = Synthetic::new(8, 16, 2, 3);
    let first = data.batch(32);
    let mut t = Trainer::new(
        SaeConfig::matryoshka(8, 32, 2).unwrap(),
        quick_train_config(),
        &first,
    )
    .unwrap();
    let bad = first
        .broadcast_mul(&Tensor::new(&[f32::NAN], &Device::Cpu).unwrap())
        .unwrap();
    for _ in 0..3 {
        t.step(&first).unwrap();
    }
    let err = t.step(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            SaeError::NonFinite {
                step: 3,
                what: "loss",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("step 3"), "{err}");
}

#[test]
fn width_mismatch_is_an_error() {
    let mut data = Synthetic::new(8, 16, 2, 4);
    let mut t = Trainer::new(
        SaeConfig::matryoshka(8, 32, 2).unwrap(),
        quick_train_config(),
        &data.batch(16),
    )
    .unwrap();
    let err = t
        .step(&Tensor::zeros((4, 9), candle_core::DType::F32, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("width 9") && err.to_string().contains("step 0"),
        "{err}"
    );
    assert!(t
        .sae()
        .encode(&Tensor::zeros((2, 7), candle_core::DType::F32, &Device::Cpu).unwrap())
        .is_err());
}

#[test]
fn decoder_gradient_projection_keeps_row_norms_to_first_order() {
    let mut rng = StdRng::seed_from_u64(5);
    let (f, d) = (12, 7);
    let mut w: Vec<f32> = (0..f * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    for row in w.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
    let w = Tensor::from_vec(w, (f, d), &Device::Cpu).unwrap();
    let g = Tensor::from_vec(
        (0..f * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
        (f, d),
        &Device::Cpu,
    )
    .unwrap();
    let p = project_decoder_grad(&g, &w).unwrap();
    let dots = (&p * &w).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(dots.iter().all(|v| v.abs() < 1e-5), "{dots:?}");
    for eps in [1e-2f64, 1e-3] {
        let norms = (&w - (&p * eps).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            .sqrt()
            .unwrap();
        let unprojected = (&w - (&g * eps).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            .sqrt()
            .unwrap();
        let dev = |t: Tensor| {
            t.to_vec1::<f32>()
                .unwrap()
                .iter()
                .fold(0f32, |m, n| m.max((n - 1.0).abs()))
        };
        // Second order in eps for the projection, first order without it.
        assert!(dev(norms) < 2.0 * (eps * eps) as f32 * 10.0, "eps {eps}");
        assert!(dev(unprojected) > 0.1 * eps as f32, "eps {eps}");
    }
}

#[test]
fn fvu_of_exact_and_mean_reconstructions() {
    let x = Synthetic::new(6, 8, 2, 6).batch(20);
    assert!(fvu(&x, &x).unwrap().abs() < 1e-12);
    let mean = x.mean_keepdim(0).unwrap().broadcast_as(x.shape()).unwrap();
    assert!((fvu(&x, &mean).unwrap() - 1.0).abs() < 1e-6);
}

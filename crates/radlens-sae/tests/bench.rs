//! Timing of one training step at the benchmark size (d 576, F 4608, k 32, batch 4096),
//! sparse vs dense. Run with
//! `cargo test --release -p radlens-sae --test bench -- --ignored --nocapture`.

use candle_core::{Device, Tensor};
use radlens_sae::{ComputePath, SaeConfig, TrainConfig, Trainer};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

#[test]
#[ignore = "benchmark: slow outside release builds"]
fn training_step_time_sparse_vs_dense() {
    let (d, f, k, batch) = (576, 4608, 32, 4096);
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..batch * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let x = Tensor::from_vec(x, (batch, d), &Device::Cpu).unwrap();
    for path in [ComputePath::Sparse, ComputePath::Dense] {
        let cfg = TrainConfig {
            path,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(SaeConfig::matryoshka(d, f, k).unwrap(), cfg, &x).unwrap();
        t.step(&x).unwrap(); // warm-up
        let mut times: Vec<f64> = (0..3)
            .map(|_| {
                let start = Instant::now();
                t.step(&x).unwrap();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{path:?}: median {:.3} s/step (min {:.3})",
            times[1], times[0]
        );
    }
}

//! Seeded synthetic activations: sparse codes times a random unit dictionary.

use candle_core::{Device, Tensor};
use radlens_sae::{AdamConfig, TrainConfig};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Rows `x = sum of `active` random atoms of a unit `atoms x d` dictionary`, coefficients in
/// [0.5, 1.5], plus an offset.
pub struct Synthetic {
    dict: Vec<f32>,
    d: usize,
    atoms: usize,
    active: usize,
    rng: StdRng,
}

impl Synthetic {
    pub fn new(d: usize, atoms: usize, active: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut dict: Vec<f32> = (0..atoms * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for row in dict.chunks_mut(d) {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= n);
        }
        Self {
            dict,
            d,
            atoms,
            active,
            rng,
        }
    }

    pub fn batch(&mut self, n: usize) -> Tensor {
        let mut x = vec![0.2f32; n * self.d];
        for row in x.chunks_mut(self.d) {
            for _ in 0..self.active {
                let a = self.rng.gen_range(0..self.atoms);
                let c: f32 = self.rng.gen_range(0.5..1.5);
                for (v, w) in row.iter_mut().zip(&self.dict[a * self.d..(a + 1) * self.d]) {
                    *v += c * w;
                }
            }
        }
        Tensor::from_vec(x, (n, self.d), &Device::Cpu).unwrap()
    }
}

/// Fast settings for tiny problems.
pub fn quick_train_config() -> TrainConfig {
    TrainConfig {
        adam: AdamConfig {
            lr: Some(1e-2),
            warmup_steps: 10,
            ..AdamConfig::default()
        },
        dead_after_tokens: 2_000,
        threshold_start_step: 20,
        threshold_beta: 0.9,
        seed: 7,
        ..TrainConfig::default()
    }
}

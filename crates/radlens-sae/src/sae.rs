//! The SAE parameters and inference (encode/decode).

use crate::config::{Activation, SaeConfig};
use crate::{Result, SaeError};
use candle_core::{DType, Device, Tensor, Var};
use radlens_kernels::sparse::{
    above_threshold, batch_topk, bias_relu, scatter_dense, sparse_decode, sparse_encode,
    topk_per_row, SparseIndex,
};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A sparse autoencoder over f32 CPU tensors.
///
/// It works on normalised activations `x * activation_scale`; [`Sae::encode`] and
/// [`Sae::decode`] take and return raw activations and apply the scale themselves.
pub struct Sae {
    pub(crate) cfg: SaeConfig,
    /// (d_in, d_sae).
    pub(crate) w_enc: Var,
    /// (d_sae).
    pub(crate) b_enc: Var,
    /// (d_sae, d_in), unit-norm rows during training.
    pub(crate) w_dec: Var,
    /// (d_in).
    pub(crate) b_dec: Var,
    /// Global inference threshold of BatchTopK SAEs (`None` until learnt).
    pub(crate) threshold: Option<f32>,
    /// Factor applied to raw activations before encoding.
    pub(crate) act_scale: f32,
}

/// Sparse latent codes of a batch: `values[n]` at entry n of `index` (rows are tokens),
/// in the units of the normalised activations.
pub struct Codes {
    pub index: SparseIndex,
    /// (index.nnz()) values.
    pub values: Tensor,
}

impl Codes {
    /// The dense (tokens, d_sae) code matrix.
    pub fn to_dense(&self) -> Result<Tensor> {
        Ok(scatter_dense(&self.values, &self.index)?)
    }
}

impl Sae {
    /// A fresh SAE: random unit-norm decoder rows (seeded), `W_enc = W_dec^T`, zero biases.
    pub fn new(cfg: SaeConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let (d, f) = (cfg.d_in, cfg.d_sae);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w: Vec<f32> = (0..f * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for row in w.chunks_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let w_dec = Tensor::from_vec(w, (f, d), &Device::Cpu)?;
        let w_enc = w_dec.t()?.contiguous()?;
        let zeros = |n| Tensor::zeros(n, DType::F32, &Device::Cpu);
        Self::from_tensors(cfg, w_enc, zeros(f)?, w_dec, zeros(d)?, None, 1.0)
    }

    /// An SAE from its tensors, checking their shapes against `cfg`.
    pub fn from_tensors(
        cfg: SaeConfig,
        w_enc: Tensor,
        b_enc: Tensor,
        w_dec: Tensor,
        b_dec: Tensor,
        threshold: Option<f32>,
        act_scale: f32,
    ) -> Result<Self> {
        cfg.validate()?;
        let (d, f) = (cfg.d_in, cfg.d_sae);
        for (name, t, want) in [
            ("W_enc", &w_enc, vec![d, f]),
            ("b_enc", &b_enc, vec![f]),
            ("W_dec", &w_dec, vec![f, d]),
            ("b_dec", &b_dec, vec![d]),
        ] {
            if t.dims() != want.as_slice() {
                return Err(SaeError::Config(format!(
                    "{name} has shape {:?}, expected {want:?}",
                    t.dims()
                )));
            }
        }
        if !(act_scale.is_finite() && act_scale > 0.0) {
            return Err(SaeError::Config(format!(
                "activation scale {act_scale} must be positive"
            )));
        }
        let var = |t: Tensor| -> Result<Var> {
            Ok(Var::from_tensor(
                &t.to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?
                    .contiguous()?,
            )?)
        };
        Ok(Self {
            cfg,
            w_enc: var(w_enc)?,
            b_enc: var(b_enc)?,
            w_dec: var(w_dec)?,
            b_dec: var(b_dec)?,
            threshold,
            act_scale,
        })
    }

    pub fn config(&self) -> &SaeConfig {
        &self.cfg
    }

    /// Encoder weights (d_in, d_sae).
    pub fn w_enc(&self) -> &Tensor {
        self.w_enc.as_tensor()
    }

    pub fn b_enc(&self) -> &Tensor {
        self.b_enc.as_tensor()
    }

    /// Decoder weights (d_sae, d_in).
    pub fn w_dec(&self) -> &Tensor {
        self.w_dec.as_tensor()
    }

    pub fn b_dec(&self) -> &Tensor {
        self.b_dec.as_tensor()
    }

    /// The global inference threshold of a BatchTopK SAE, once learnt.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// The factor applied to raw activations (mean squared norm d after scaling).
    pub fn activation_scale(&self) -> f32 {
        self.act_scale
    }

    /// Errors unless `x` is (tokens, d_in).
    pub(crate) fn check_width(&self, x: &Tensor) -> Result<()> {
        let d = x.dims2()?.1;
        if d != self.cfg.d_in {
            return Err(SaeError::WidthMismatch {
                got: d,
                want: self.cfg.d_in,
                context: String::new(),
            });
        }
        Ok(())
    }

    /// Dense pre-activations `relu((x - b_dec) W_enc + b_enc)` of normalised activations,
    /// without gradient tracking.
    pub(crate) fn pre_activations(&self, x: &Tensor) -> Result<Tensor> {
        let xc = x.broadcast_sub(&self.b_dec.as_tensor().detach())?;
        let z = xc.matmul(&self.w_enc.as_tensor().detach())?;
        Ok(bias_relu(&z, &self.b_enc.as_tensor().detach())?)
    }

    /// Inference codes of raw activations (tokens, d_in): BatchTopK SAEs keep
    /// pre-activations above the learnt threshold (the batch top-k before one is learnt),
    /// TopK SAEs each token's top k, ReLU SAEs every positive pre-activation.
    pub fn encode(&self, x: &Tensor) -> Result<Codes> {
        self.check_width(x)?;
        let x = (x.to_dtype(DType::F32)? * self.act_scale as f64)?;
        let pre = self.pre_activations(&x)?;
        let index = match (&self.cfg.activation, self.threshold) {
            (Activation::BatchTopK { .. }, Some(t)) => above_threshold(&pre, t)?,
            (Activation::BatchTopK { k }, None) => batch_topk(&pre, k * x.dims2()?.0)?,
            (Activation::TopK { k }, _) => topk_per_row(&pre, *k, None)?,
            (Activation::Relu { .. }, _) => above_threshold(&pre, 0.0)?,
        };
        let xc = x.broadcast_sub(self.b_dec.as_tensor())?;
        let values = sparse_encode(&xc, self.w_enc.as_tensor(), self.b_enc.as_tensor(), &index)?;
        Ok(Codes {
            index,
            values: values.detach(),
        })
    }

    /// Reconstructions in raw units from each Matryoshka prefix of the groups, the last
    /// being the full reconstruction.
    pub fn decode_prefixes(&self, codes: &Codes) -> Result<Vec<Tensor>> {
        let rows = codes.index.rows();
        let mut x_hat = self.b_dec.as_tensor().broadcast_as((rows, self.cfg.d_in))?;
        let mut out = Vec::with_capacity(self.cfg.group_sizes.len());
        for cols in self.cfg.group_ranges() {
            x_hat = (x_hat
                + sparse_decode(&codes.values, self.w_dec.as_tensor(), &codes.index, cols)?)?;
            out.push((&x_hat / self.act_scale as f64)?.detach());
        }
        Ok(out)
    }

    /// The full reconstruction in raw units.
    pub fn decode(&self, codes: &Codes) -> Result<Tensor> {
        let x_hat = sparse_decode(
            &codes.values,
            self.w_dec.as_tensor(),
            &codes.index,
            0..self.cfg.d_sae,
        )?
        .broadcast_add(self.b_dec.as_tensor())?;
        Ok((x_hat / self.act_scale as f64)?.detach())
    }
}

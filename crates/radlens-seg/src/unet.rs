//! The U-Net backbone with a plain or SSN head.

use crate::config::{ConvBackend, HeadConfig, ModelConfig};
use crate::error::Result;
use crate::ssn::{SsnHead, SsnParams};
use candle_core::{Device, Tensor};
use radlens_nn::layers::{max_pool, Conv2d, ConvBlock, Upsample2x};
use radlens_nn::ParamStore;

enum Head {
    Plain(Conv2d),
    Ssn(SsnHead),
}

/// What the head produces for a batch.
pub enum HeadOutput {
    /// Class logits, (B, C, H, W).
    Plain(Tensor),
    /// The SSN's distribution over logit maps.
    Ssn(SsnParams),
}

impl HeadOutput {
    /// The mean logits (for the SSN, the distribution's mean), (B, C, H, W).
    pub fn mean_logits(&self) -> &Tensor {
        match self {
            HeadOutput::Plain(l) => l,
            HeadOutput::Ssn(p) => &p.mean,
        }
    }
}

/// A U-Net: `depth` levels of conv blocks with 2x2 max-pooling down,
/// 2x2 transposed convolutions up and skip connections by concatenation.
pub struct SegModel {
    pub config: ModelConfig,
    pub params: ParamStore,
    pub backend: ConvBackend,
    down: Vec<ConvBlock>,
    up: Vec<Upsample2x>,
    dec: Vec<ConvBlock>,
    head: Head,
}

impl SegModel {
    /// Build and initialise (He-normal, from `seed`) a model for `config`.
    pub fn new(
        config: &ModelConfig,
        device: &Device,
        seed: u64,
        backend: ConvBackend,
    ) -> Result<Self> {
        config.validate().map_err(crate::error::SegError::Invalid)?;
        let mut p = ParamStore::new(device, seed);
        let widths: Vec<usize> = (0..config.depth).map(|i| config.base_width << i).collect();
        let mut down = Vec::new();
        for (i, &w) in widths.iter().enumerate() {
            let cin = if i == 0 { 1 } else { widths[i - 1] };
            down.push(ConvBlock::new(
                &mut p,
                &format!("down{i}"),
                cin,
                w,
                config.norm,
            )?);
        }
        let (mut up, mut dec) = (Vec::new(), Vec::new());
        for i in (1..config.depth).rev() {
            up.push(Upsample2x::new(
                &mut p,
                &format!("up{i}"),
                widths[i],
                widths[i - 1],
            )?);
            dec.push(ConvBlock::new(
                &mut p,
                &format!("dec{i}"),
                2 * widths[i - 1],
                widths[i - 1],
                config.norm,
            )?);
        }
        let classes = config.classes.len();
        let head = match config.head {
            HeadConfig::Plain => Head::Plain(Conv2d::new(&mut p, "head", widths[0], classes, 1)?),
            HeadConfig::Ssn { rank, .. } => {
                Head::Ssn(SsnHead::new(&mut p, widths[0], classes, rank)?)
            }
        };
        Ok(Self {
            config: config.clone(),
            params: p,
            backend,
            down,
            up,
            dec,
            head,
        })
    }

    /// Run the network on a (B, 1, S, S) batch.
    pub fn forward(&self, x: &Tensor) -> Result<HeadOutput> {
        let mut skips = Vec::new();
        let mut x = x.clone();
        for (i, block) in self.down.iter().enumerate() {
            x = block.forward(&x, self.backend)?;
            if i + 1 < self.down.len() {
                skips.push(x.clone());
                x = max_pool(&x, self.backend)?;
            }
        }
        for (up, dec) in self.up.iter().zip(&self.dec) {
            let skip = skips.pop().expect("one skip per level");
            let u = up.forward(&x, self.backend)?;
            x = dec.forward(&Tensor::cat(&[&u, &skip], 1)?, self.backend)?;
        }
        Ok(match &self.head {
            Head::Plain(conv) => HeadOutput::Plain(conv.forward(&x, self.backend)?),
            Head::Ssn(ssn) => HeadOutput::Ssn(ssn.forward(&x, self.backend)?),
        })
    }
}

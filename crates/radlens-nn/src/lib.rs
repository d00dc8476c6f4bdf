//! Neural-network building blocks shared by radlens' models (U-Net/SSN, SAEs, and the
//! GAN to come): named parameters with seeded initialisation, layers that run on
//! radlens' fast CPU kernels or candle's stock ops, one Adam(W) and the learning-rate
//! schedules the trainers use.

pub mod layers;
pub mod optim;
pub mod params;
pub mod schedule;

mod error;

pub use error::{NnError, Result};
pub use layers::{ConvBackend, NormKind};
pub use optim::{Adam, AdamHyper};
pub use params::ParamStore;

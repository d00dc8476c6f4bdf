//! Segmentation models for chest radiographs on candle: a U-Net with
//! configurable depth, width and normalisation, and the Stochastic
//! Segmentation Network head (Monteiro et al., NeurIPS 2020) that models the
//! logit map as a low-rank multivariate normal.

pub mod calibrate;
pub mod case_results;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod html;
pub mod loss;
pub mod predict;
pub mod prediction_files;
pub mod prediction_report;
pub mod render;
pub mod robustness;
pub mod semanticgan;
pub mod shift;
pub mod ssn;
pub mod subgroups;
pub mod train;
pub mod unet;

mod sorted_json;

pub use config::{HeadConfig, ModelConfig, NormKind, TrainConfig};
pub use error::{Result, SegError};
pub use evaluate::{EvalEvent, EvalSummary};
pub use predict::{Prediction, Predictor};
pub use prediction_report::PredictionReport;
pub use train::TrainEvent;
pub use unet::SegModel;

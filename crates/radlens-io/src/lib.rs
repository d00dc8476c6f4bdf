//! Chest X-ray input/output for radlens: images (PNG, JPEG, DICOM), label maps,
//! datasets (JSRT, covid-cxr, nnU-Net v2 raw layout) with typed patient attributes,
//! splits, preprocessing, training augmentation and robustness perturbations.

pub mod attributes;
pub mod augment;
pub mod classes;
pub mod dataset;
pub mod dicom;
pub mod error;
pub mod image;
pub mod mask;
pub mod perturb;
pub mod preprocess;
pub mod raster;
pub mod split;
mod table;
pub mod xray;

pub use attributes::{AttributeValue, Attributes, Sex};
pub use classes::{ClassId, ClassSchema};
pub use dataset::{Dataset, DatasetSpec, Sample};
pub use error::{IoError, Result};
pub use image::read_image;
pub use mask::LabelMap;
pub use xray::{PixelSpacing, XrayImage};

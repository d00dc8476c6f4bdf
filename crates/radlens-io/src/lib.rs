//! Chest X-ray input/output for radlens: images (PNG, JPEG, DICOM), label maps,
//! datasets (JSRT, covid-cxr, nnU-Net v2 raw layout), report corpora (IU X-ray), splits,
//! preprocessing and training augmentation.

pub mod augment;
pub mod classes;
pub mod dataset;
pub mod dicom;
pub mod error;
pub mod image;
pub mod mask;
pub mod preprocess;
pub mod reports;
pub mod split;
mod table;

pub use classes::{ClassId, ClassSchema};
pub use dataset::{Dataset, DatasetSpec, PatientMeta, Sample, Sex};
pub use error::{IoError, Result};
pub use image::{read_image, PixelSpacing, XrayImage};
pub use mask::LabelMap;

//! Datasets: samples with an image, a label source and patient attributes.
//!
//! A dataset is named on the command line as `<kind>:<dir>`, e.g.
//! `jsrt:../shared/data/jsrt` (`jsrt+clavicles:` adds the clavicles),
//! `covid-cxr:../shared/data/covid-cxr` or
//! `nnunet:/data/nnUNet_raw/Dataset001_Lungs`.

pub mod covid;
pub mod jsrt;
pub mod nnunet;

use crate::attributes::Attributes;
use crate::classes::{ClassId, ClassSchema};
use crate::error::{IoError, Result};
use crate::image::read_image;
use crate::mask::{read_binary_mask, read_label_png, LabelMap};
use crate::xray::{PixelSpacing, XrayImage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The supported dataset layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Jsrt,
    /// JSRT with the clavicles as classes 4 and 5 (painted over the lungs).
    JsrtClavicles,
    CovidCxr,
    /// covid-cxr with ground-glass opacity and consolidation merged into `opacity`.
    CovidCxrOpacity,
    Nnunet,
}

/// `<kind>:<dir>` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    pub dir: PathBuf,
}

impl std::str::FromStr for DatasetSpec {
    type Err = IoError;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, dir) = s
            .split_once(':')
            .ok_or_else(|| IoError::UnknownDatasetKind(s.to_string()))?;
        let kind = match kind {
            "jsrt" => DatasetKind::Jsrt,
            "jsrt+clavicles" => DatasetKind::JsrtClavicles,
            "covid-cxr" | "covid" => DatasetKind::CovidCxr,
            "covid-cxr+opacity" => DatasetKind::CovidCxrOpacity,
            "nnunet" | "nnunet-v2" => DatasetKind::Nnunet,
            _ => return Err(IoError::UnknownDatasetKind(kind.to_string())),
        };
        Ok(Self {
            kind,
            dir: PathBuf::from(dir),
        })
    }
}

impl std::fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            DatasetKind::Jsrt => "jsrt",
            DatasetKind::JsrtClavicles => "jsrt+clavicles",
            DatasetKind::CovidCxr => "covid-cxr",
            DatasetKind::CovidCxrOpacity => "covid-cxr+opacity",
            DatasetKind::Nnunet => "nnunet",
        };
        write!(f, "{kind}:{}", self.dir.display())
    }
}

impl DatasetSpec {
    /// Open the dataset: index its samples and parse its metadata.
    pub fn open(&self) -> Result<Dataset> {
        if !self.dir.is_dir() {
            return Err(IoError::invalid(&self.dir, "dataset folder not found"));
        }
        match self.kind {
            DatasetKind::Jsrt => jsrt::open(&self.dir, false),
            DatasetKind::JsrtClavicles => jsrt::open(&self.dir, true),
            DatasetKind::CovidCxr => covid::open(&self.dir, false),
            DatasetKind::CovidCxrOpacity => covid::open(&self.dir, true),
            DatasetKind::Nnunet => nnunet::open(&self.dir),
        }
    }
}

/// Where a sample's reference labels come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    /// One binary PNG per class, painted in order (later wins).
    BinaryMasks(Vec<(ClassId, PathBuf)>),
    /// Bounding-box crops pasted into a canvas (covid-cxr), painted in order.
    Crops {
        canvas: (usize, usize),
        crops: Vec<covid::Crop>,
    },
    /// An integer label PNG whose values are class ids.
    LabelPng(PathBuf),
}

/// One radiograph with its reference segmentation and patient attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Case id, unique in its dataset (file stem).
    pub id: String,
    pub image_path: PathBuf,
    pub labels: LabelSource,
    /// What the dataset records about the patient and the image (sex, age, view, findings).
    pub attributes: Attributes,
    /// Spacing documented by the dataset for the image grid (overridden by DICOM headers).
    pub spacing: Option<PixelSpacing>,
}

impl Sample {
    /// Read the image; the dataset's documented spacing fills in a missing one.
    pub fn load_image(&self) -> Result<XrayImage> {
        let mut img = read_image(&self.image_path)?;
        if img.spacing.is_none() {
            img.spacing = self.spacing;
        }
        Ok(img)
    }

    /// Read the reference label map; it must be `size` (width, height).
    pub fn load_labels(&self, size: (usize, usize)) -> Result<LabelMap> {
        let check = |path: &Path, w: usize, h: usize| {
            if (w, h) != size {
                Err(IoError::invalid(
                    path,
                    format!(
                        "mask is {w}x{h} but its image {} is {}x{}",
                        self.image_path.display(),
                        size.0,
                        size.1
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match &self.labels {
            LabelSource::BinaryMasks(masks) => {
                let mut map = LabelMap::empty(size.0, size.1);
                for (class, path) in masks {
                    let (w, h, m) = read_binary_mask(path)?;
                    check(path, w, h)?;
                    map.paint(&m, *class);
                }
                Ok(map)
            }
            LabelSource::Crops { canvas, crops } => {
                check(&self.image_path, canvas.0, canvas.1)?;
                let mut map = LabelMap::empty(size.0, size.1);
                for crop in crops {
                    crop.paint_into(&mut map)?;
                }
                Ok(map)
            }
            LabelSource::LabelPng(path) => {
                let map = read_label_png(path)?;
                check(path, map.width, map.height)?;
                Ok(map)
            }
        }
    }
}

/// An indexed dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub spec_name: String,
    /// The classes its label maps use (id = index).
    pub classes: ClassSchema,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// The samples whose ids are listed, in that order; unknown ids are an error.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Sample>> {
        ids.iter()
            .map(|id| {
                self.samples.iter().find(|s| &s.id == id).ok_or_else(|| {
                    IoError::InvalidArgument(format!(
                        "case '{id}' is not in dataset {}",
                        self.spec_name
                    ))
                })
            })
            .collect()
    }
}

pub(crate) fn read_to_string_lossy(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| IoError::fs(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_rejects_unknown_kinds() {
        let s: DatasetSpec = "jsrt:../shared/data/jsrt".parse().unwrap();
        assert_eq!(s.kind, DatasetKind::Jsrt);
        assert_eq!(s.to_string(), "jsrt:../shared/data/jsrt");
        assert!("covid-cxr:x".parse::<DatasetSpec>().is_ok());
        let c: DatasetSpec = "jsrt+clavicles:d".parse().unwrap();
        assert_eq!(c.kind, DatasetKind::JsrtClavicles);
        let e = "mimic:/x".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("mimic"), "{e}");
        assert!("nocolon".parse::<DatasetSpec>().is_err());
    }
}

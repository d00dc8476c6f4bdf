//! What a prediction says about one image (`result.json`): each class's area, how much
//! that area varies over the SSN samples, and how uncertain the model is inside it.

use crate::error::Result;
use crate::predict::ImageMaps;
use crate::sorted_json::write_sorted_json;
use radlens_eval::Summary;
use radlens_io::{ClassId, ClassSchema, XrayImage};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The content of `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionReport {
    /// The radiograph's path, as given.
    pub image: String,
    pub width: usize,
    pub height: usize,
    /// Row and column spacing, when known.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    pub samples: usize,
    /// One entry per foreground class of the model, in class order.
    pub classes: Vec<ClassReport>,
}

/// One class of a [`PredictionReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub class: String,
    /// The class's value in `mean_mask.png` and the sample masks.
    pub id: ClassId,
    /// Pixels of the mean mask.
    pub area_px: usize,
    /// `area_px` in mm², when the pixel spacing is known.
    pub area_mm2: Option<f64>,
    /// The class's area over the samples; `None` without samples.
    pub samples_area_px: Option<AreaSpread>,
    /// Mean normalised entropy over the class's pixels of the mean mask; `None` when
    /// the mean mask has none.
    pub mean_normalised_entropy: Option<f32>,
}

/// How an area varies over samples, in pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaSpread {
    pub mean: f64,
    pub sd: f64,
    pub min_to_max: [f64; 2],
}

impl PredictionReport {
    /// The report on `img` (read from `source`) of a prediction mapped onto it.
    pub fn new(source: &Path, img: &XrayImage, maps: &ImageMaps, classes: &ClassSchema) -> Self {
        let pixel_mm2 = img.spacing.map(|s| s.row_mm * s.col_mm);
        let area = |labels: &[ClassId], c| labels.iter().filter(|&&l| l == c).count();
        let classes = classes
            .foreground()
            .map(|c| {
                let area_px = area(&maps.mean.labels, c);
                let sample_areas: Vec<f64> = maps
                    .samples
                    .iter()
                    .map(|m| area(&m.labels, c) as f64)
                    .collect();
                let inside: Vec<f32> = (maps.mean.labels.iter().zip(&maps.entropy))
                    .filter(|(&l, _)| l == c)
                    .map(|(_, &e)| e)
                    .collect();
                ClassReport {
                    class: classes.name(c).to_string(),
                    id: c,
                    area_px,
                    area_mm2: pixel_mm2.map(|a| a * area_px as f64),
                    samples_area_px: Summary::of(&sample_areas, 0).map(|s| AreaSpread {
                        mean: s.mean,
                        sd: s.sd,
                        min_to_max: [
                            sample_areas.iter().copied().fold(f64::INFINITY, f64::min),
                            sample_areas
                                .iter()
                                .copied()
                                .fold(f64::NEG_INFINITY, f64::max),
                        ],
                    }),
                    mean_normalised_entropy: (!inside.is_empty())
                        .then(|| inside.iter().sum::<f32>() / inside.len() as f32),
                }
            })
            .collect();
        Self {
            image: source.display().to_string(),
            width: img.width,
            height: img.height,
            pixel_spacing_mm: img.spacing.map(|s| [s.row_mm, s.col_mm]),
            samples: maps.samples.len(),
            classes,
        }
    }

    /// Writes `result.json` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_sorted_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_io::{LabelMap, PixelSpacing};

    fn map(labels: &[u8]) -> LabelMap {
        LabelMap {
            width: 2,
            height: 2,
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn areas_spread_and_uncertainty_per_class() {
        let mut img = XrayImage::new(2, 2, vec![0.0; 4]).unwrap();
        img.spacing = Some(PixelSpacing::isotropic(0.5));
        let maps = ImageMaps {
            mean: map(&[1, 1, 0, 2]),
            samples: vec![map(&[1, 0, 0, 2]), map(&[1, 1, 1, 0])],
            entropy: vec![0.2, 0.4, 0.9, 0.1],
            disagreement: None,
        };
        let classes = ClassSchema::new(["background", "lung", "heart", "clavicle"]);
        let r = PredictionReport::new(Path::new("a.png"), &img, &maps, &classes);
        assert_eq!(
            (r.width, r.samples, r.pixel_spacing_mm),
            (2, 2, Some([0.5, 0.5]))
        );
        let lung = &r.classes[0];
        assert_eq!((lung.class.as_str(), lung.id, lung.area_px), ("lung", 1, 2));
        assert_eq!(lung.area_mm2, Some(0.5));
        let spread = lung.samples_area_px.as_ref().unwrap();
        assert_eq!((spread.mean, spread.min_to_max), (2.0, [1.0, 3.0]));
        assert!((lung.mean_normalised_entropy.unwrap() - 0.3).abs() < 1e-6);
        let clavicle = &r.classes[2];
        assert_eq!(
            (clavicle.area_px, clavicle.mean_normalised_entropy),
            (0, None)
        );
    }
}

//! One image analysed once for every engine command: the anatomy model's masks (mean
//! and samples), the opacity model's masks when one is given, and the measurements.

use crate::error::{ReportError, Result};
use crate::measure::geometry::AnatomyIds;
use crate::measure::{measure, predict_masks, Masks, MeasureModel, Measurements, SampleConfig};
use radlens_io::XrayImage;
use std::path::{Path, PathBuf};

/// The models the engine reads images with.
pub struct Models {
    /// Lungs and heart (radlens' JSRT SSN).
    pub anatomy: MeasureModel,
    /// Lungs and opacity (radlens' covid-cxr SSN), when given.
    pub opacity: Option<MeasureModel>,
    pub sampling: SampleConfig,
}

impl Models {
    /// Load the anatomy model (it must have lungs and a heart) and the opacity model
    /// (lungs and opacity) from their run folders.
    pub fn load(anatomy: &Path, opacity: Option<&Path>, sampling: SampleConfig) -> Result<Self> {
        let a = MeasureModel::load(anatomy)?;
        if a.ids.heart.is_none() {
            return Err(ReportError::Invalid(format!(
                "{}: the anatomy model has no 'heart' class",
                anatomy.display()
            )));
        }
        let o = opacity.map(MeasureModel::load).transpose()?;
        if let (Some(o), Some(p)) = (&o, opacity) {
            if o.ids.opacity.is_none() {
                return Err(ReportError::Invalid(format!(
                    "{}: the opacity model has no 'opacity' class",
                    p.display()
                )));
            }
        }
        Ok(Self {
            anatomy: a,
            opacity: o,
            sampling,
        })
    }
}

/// An analysed image.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub path: PathBuf,
    pub image: XrayImage,
    pub anatomy: Masks,
    pub anatomy_ids: AnatomyIds,
    pub opacity: Option<(Masks, AnatomyIds)>,
    pub measurements: Measurements,
}

/// Read and analyse the image at `path`.
pub fn analyse(models: &Models, path: &Path) -> Result<Analysis> {
    let image =
        radlens_io::image::read_image(path).map_err(|e| ReportError::Invalid(e.to_string()))?;
    analyse_image(models, path, image)
}

/// Analyse an image already read.
pub fn analyse_image(models: &Models, path: &Path, image: XrayImage) -> Result<Analysis> {
    let cfg = models.sampling;
    let anatomy = predict_masks(&models.anatomy, &image, cfg)?;
    let opacity = models
        .opacity
        .as_ref()
        .map(|m| Ok::<_, ReportError>((predict_masks(m, &image, cfg)?, m.ids)))
        .transpose()?;
    let measurements = measure(
        &image,
        (&anatomy, &models.anatomy),
        opacity.as_ref().map(|(m, ids)| (m, *ids)),
        cfg,
    );
    Ok(Analysis {
        path: path.to_path_buf(),
        image,
        anatomy,
        anatomy_ids: models.anatomy.ids,
        opacity,
        measurements,
    })
}

//! The files `radlens seg predict` writes for each image, into a folder of its own:
//!
//! - `mean_mask.png`: class ids (0 background, 1.. per `result.json` classes)
//! - `overlay.png`: the radiograph with each class tinted and outlined
//! - `entropy.png`: entropy of the predictive distribution / ln(C), as a heat map
//! - `disagreement.png`: fraction of samples disagreeing with the mean mask (with samples)
//! - `samples/sample_NN.png`: class ids of each SSN sample
//! - `result.json`: the [`PredictionReport`]

use crate::error::Result;
use crate::predict::{Prediction, Predictor};
use crate::prediction_report::PredictionReport;
use crate::render::{heat_map, overlay};
use radlens_core::Observer;
use radlens_io::raster::{write_gray_png, write_rgb_png};
use radlens_io::{ClassSchema, XrayImage};
use std::path::{Path, PathBuf};

/// What `radlens seg predict` was asked to do.
pub struct PredictRequest<'a> {
    /// The radiographs and the paths they were read from.
    pub images: &'a [(PathBuf, XrayImage)],
    /// Each image's files go into `out/<its file stem>`.
    pub out: &'a Path,
    /// SSN samples per image (0 for the mean only).
    pub samples: usize,
    /// Scale of the samples' deviation from the mean (1 = the trained distribution).
    pub temperature: f64,
    pub seed: u64,
}

/// The files of one image are written.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionWritten {
    pub image: PathBuf,
    pub dir: PathBuf,
}

/// Predicts every image of `req` and writes its files; the reports come back in the
/// order of the images.
pub fn predict_images(
    predictor: &Predictor,
    req: &PredictRequest,
    observer: &dyn Observer<PredictionWritten>,
) -> Result<Vec<PredictionReport>> {
    req.images
        .iter()
        .map(|(path, img)| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = req.out.join(stem);
            let pred = predictor.predict(img, req.samples, req.temperature, req.seed)?;
            let report = write_prediction(&dir, path, img, &pred, predictor.model.classes())?;
            observer.observe(&PredictionWritten {
                image: path.clone(),
                dir,
            });
            Ok(report)
        })
        .collect()
}

/// Writes the files of `pred` for `img` (read from `source`) into `dir`.
pub fn write_prediction(
    dir: &Path,
    source: &Path,
    img: &XrayImage,
    pred: &Prediction,
    classes: &ClassSchema,
) -> Result<PredictionReport> {
    let (w, h) = (img.width, img.height);
    let maps = pred.on_image();
    write_gray_png(&dir.join("mean_mask.png"), w, h, &maps.mean.labels)?;
    write_rgb_png(&dir.join("overlay.png"), w, h, &overlay(img, &maps.mean))?;
    write_rgb_png(&dir.join("entropy.png"), w, h, &heat_map(&maps.entropy))?;
    if let Some(d) = &maps.disagreement {
        write_rgb_png(&dir.join("disagreement.png"), w, h, &heat_map(d))?;
    }
    for (i, s) in maps.samples.iter().enumerate() {
        let path = dir.join("samples").join(format!("sample_{i:02}.png"));
        write_gray_png(&path, w, h, &s.labels)?;
    }
    let report = PredictionReport::new(source, img, &maps, classes);
    report.write(&dir.join("result.json"))?;
    Ok(report)
}

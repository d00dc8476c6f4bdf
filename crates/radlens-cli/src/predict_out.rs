//! Files written by `radlens seg predict` for one image.

use anyhow::Result;
use radlens_core::atomic::write_atomic;
use radlens_io::raster::{write_gray_png, write_rgb_png};
use radlens_io::XrayImage;
use radlens_seg::render::{heat_map, overlay};
use radlens_seg::{ModelConfig, Prediction};
use std::path::{Path, PathBuf};

/// Write the mean mask, samples, uncertainty maps, overlay and `result.json` into `dir`.
///
/// - `mean_mask.png`: class ids (0 background, 1.. per `result.json` classes)
/// - `overlay.png`: the radiograph with each class tinted and outlined
/// - `samples/sample_NN.png`: class ids of each SSN sample
/// - `entropy.png`: entropy of the predictive distribution / ln(C), as a heat map
/// - `disagreement.png`: fraction of samples disagreeing with the mean mask
/// - `result.json`: per-class areas (pixels and mm² when the spacing is known),
///   their spread over samples, and the mean uncertainty inside each class.
pub fn write_prediction(
    dir: &Path,
    source: &Path,
    img: &XrayImage,
    pred: &Prediction,
    cfg: &ModelConfig,
) -> Result<PathBuf> {
    let (w, h) = (img.width, img.height);
    let mean = pred.mean_mask_to_image();
    write_gray_png(&dir.join("mean_mask.png"), w, h, &mean.labels)?;
    write_rgb_png(&dir.join("overlay.png"), w, h, &overlay(img, &mean))?;
    let ln_c = (pred.classes as f32).ln();
    let entropy: Vec<f32> = pred.entropy().iter().map(|e| e / ln_c).collect();
    let entropy_full = pred.map_to_image(&entropy);
    write_rgb_png(&dir.join("entropy.png"), w, h, &heat_map(&entropy_full))?;
    let sample_maps: Vec<_> = pred
        .samples
        .iter()
        .map(|s| pred.labels_to_image(s))
        .collect();
    if !sample_maps.is_empty() {
        write_rgb_png(
            &dir.join("disagreement.png"),
            w,
            h,
            &heat_map(&pred.map_to_image(&pred.disagreement())),
        )?;
    }
    for (i, s) in sample_maps.iter().enumerate() {
        write_gray_png(
            &dir.join("samples").join(format!("sample_{i:02}.png")),
            w,
            h,
            &s.labels,
        )?;
    }
    let pixel_mm2 = img.spacing.map(|s| s.row_mm * s.col_mm);
    let classes: Vec<serde_json::Value> = cfg
        .classes
        .foreground()
        .map(|c| {
            let area = mean.labels.iter().filter(|&&l| l == c).count();
            let sample_areas: Vec<f64> = sample_maps.iter().map(|m| m.labels.iter().filter(|&&l| l == c).count() as f64).collect();
            let spread = radlens_eval::Summary::of(&sample_areas, 0);
            let inside: Vec<f32> = (0..w * h).filter(|&i| mean.labels[i] == c).map(|i| entropy_full[i]).collect();
            serde_json::json!({
                "class": cfg.classes.name(c),
                "id": c,
                "area_px": area,
                "area_mm2": pixel_mm2.map(|a| a * area as f64),
                "samples_area_px": spread.map(|s| serde_json::json!({"mean": s.mean, "sd": s.sd, "min_to_max": [sample_areas.iter().cloned().fold(f64::INFINITY, f64::min), sample_areas.iter().cloned().fold(f64::NEG_INFINITY, f64::max)]})),
                "mean_normalised_entropy": if inside.is_empty() { None } else { Some(inside.iter().sum::<f32>() / inside.len() as f32) },
            })
        })
        .collect();
    let doc = serde_json::json!({
        "image": source.display().to_string(),
        "width": w,
        "height": h,
        "pixel_spacing_mm": img.spacing.map(|s| [s.row_mm, s.col_mm]),
        "samples": pred.samples.len(),
        "classes": classes,
    });
    write_atomic(
        &dir.join("result.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    Ok(dir.to_path_buf())
}

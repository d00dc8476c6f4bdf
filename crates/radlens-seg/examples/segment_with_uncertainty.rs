//! Segment one chest radiograph with the shipped SSN and read its uncertainty, using the
//! library alone (no CLI):
//!
//! ```sh
//! cargo run --release -p radlens-seg --example segment_with_uncertainty -- \
//!     ../shared/data/jsrt/images/JPCLN001.png models/jsrt-ssn
//! ```
//!
//! It prints, per structure, the area of the mean mask, how much that area varies over 16
//! samples of the SSN (at the temperature `radlens seg calibrate` stored with the model), and the mean normalised entropy inside the structure; no files are
//! written.

use candle_core::Device;
use radlens_seg::prediction_report::PredictionReport;
use radlens_seg::Predictor;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/jsrt/images/JPCLN001.png".into()),
    );
    let model_dir = PathBuf::from(args.next().unwrap_or_else(|| "models/jsrt-ssn".into()));

    let img = radlens_io::read_image(&image)?;
    let predictor = Predictor::load(&model_dir, &Device::Cpu)?;
    let classes = predictor.model.classes().clone();
    // 16 samples at the model's calibrated temperature, seed 0.
    let prediction = predictor.predict(&img, 16, predictor.temperature, 0)?;
    let report = PredictionReport::new(&image, &img, &prediction.on_image(), &classes);

    println!(
        "{} ({} x {} pixels)",
        image.display(),
        img.width,
        img.height
    );
    for c in &report.classes {
        let spread = c
            .samples_area_px
            .as_ref()
            .map(|s| format!("samples {:.0} ± {:.0} px", s.mean, s.sd))
            .unwrap_or_default();
        let entropy = c
            .mean_normalised_entropy
            .map(|e| format!("entropy inside {e:.3}"))
            .unwrap_or_default();
        println!(
            "  {:<12} mean mask {:>7} px  {spread}  {entropy}",
            c.class, c.area_px
        );
    }
    Ok(())
}

//! A radiograph in memory, whatever file it came from: the type every decoder produces
//! and every consumer (preprocessing, models, rendering) takes.

use serde::{Deserialize, Serialize};

/// Physical size of one pixel, in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelSpacing {
    /// Distance between the centres of adjacent rows (vertical), mm.
    pub row_mm: f64,
    /// Distance between the centres of adjacent columns (horizontal), mm.
    pub col_mm: f64,
}

impl PixelSpacing {
    /// Square pixels of `mm` millimetres.
    pub fn isotropic(mm: f64) -> Self {
        Self {
            row_mm: mm,
            col_mm: mm,
        }
    }

    /// The spacing after resampling a `from` (w, h) grid to a `to` (w, h) grid.
    pub fn rescaled(self, from: (usize, usize), to: (usize, usize)) -> Self {
        Self {
            row_mm: self.row_mm * from.1 as f64 / to.1 as f64,
            col_mm: self.col_mm * from.0 as f64 / to.0 as f64,
        }
    }
}

/// A greyscale radiograph with intensities in [0, 1], row-major, in display
/// polarity (dense tissue and bone bright, as on film).
#[derive(Debug, Clone, PartialEq)]
pub struct XrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
    /// Pixel spacing when the file records it (DICOM) or the dataset documents it.
    pub spacing: Option<PixelSpacing>,
}

impl XrayImage {
    /// An image from row-major pixels; fails if the length does not match.
    pub fn new(width: usize, height: usize, pixels: Vec<f32>) -> std::result::Result<Self, String> {
        if pixels.len() != width * height {
            return Err(format!(
                "{} pixels for a {width}x{height} image",
                pixels.len()
            ));
        }
        Ok(Self {
            width,
            height,
            pixels,
            spacing: None,
        })
    }

    /// Pixel at column `x`, row `y`.
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.pixels[y * self.width + x]
    }

    /// The image as 8-bit greyscale.
    pub fn to_u8(&self) -> Vec<u8> {
        self.pixels
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_rescales_with_the_grid() {
        let s = PixelSpacing::isotropic(0.35).rescaled((1024, 1024), (256, 128));
        assert!((s.col_mm - 1.4).abs() < 1e-12 && (s.row_mm - 2.8).abs() < 1e-12);
    }
}

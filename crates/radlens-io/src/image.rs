//! Greyscale radiographs in memory and the readers for PNG, JPEG and DICOM.

use crate::error::{IoError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// True when the file starts with a DICOM preamble ("DICM" at byte 128) or is named *.dcm.
pub fn is_dicom(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
    {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// Read a radiograph from PNG, JPEG (8 or 16 bit, grey or colour) or DICOM.
pub fn read_image(path: &Path) -> Result<XrayImage> {
    if !path.exists() {
        return Err(IoError::fs(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    if is_dicom(path) {
        return crate::dicom::read_dicom(path);
    }
    let img = decode(path)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width == 0 || height == 0 {
        return Err(IoError::invalid(path, "image has no pixels"));
    }
    let pixels = img.to_luma32f().into_raw();
    Ok(XrayImage {
        width,
        height,
        pixels,
        spacing: None,
    })
}

/// Decode a PNG/JPEG file (format from its content), naming the file in errors.
pub(crate) fn decode(path: &Path) -> Result<image::DynamicImage> {
    image::ImageReader::open(path)
        .map_err(|e| IoError::fs(path, e))?
        .with_guessed_format()
        .map_err(|e| IoError::fs(path, e))?
        .decode()
        .map_err(|e| IoError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Write an 8-bit greyscale PNG atomically.
pub fn write_gray_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    let img = image::GrayImage::from_raw(width as u32, height as u32, pixels.to_vec())
        .ok_or_else(|| IoError::invalid(path, "pixel buffer does not match the image size"))?;
    write_png(path, image::DynamicImage::ImageLuma8(img))
}

/// Write an 8-bit RGB PNG atomically.
pub fn write_rgb_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb.to_vec())
        .ok_or_else(|| IoError::invalid(path, "pixel buffer does not match the image size"))?;
    write_png(path, image::DynamicImage::ImageRgb8(img))
}

fn write_png(path: &Path, img: image::DynamicImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| IoError::invalid(path, format!("cannot encode PNG: {e}")))?;
    Ok(radlens_core::atomic::write_atomic(path, buf.get_ref())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_8_and_16_bit_png() {
        let dir = tempfile::tempdir().unwrap();
        let p8 = dir.path().join("a.png");
        image::GrayImage::from_raw(2, 1, vec![0, 255])
            .unwrap()
            .save(&p8)
            .unwrap();
        let im = read_image(&p8).unwrap();
        assert_eq!((im.width, im.height), (2, 1));
        assert_eq!(im.pixels, vec![0.0, 1.0]);

        let p16 = dir.path().join("b.png");
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0u16, 32768, 65535])
            .unwrap()
            .save(&p16)
            .unwrap();
        let im = read_image(&p16).unwrap();
        assert!((im.pixels[1] - 32768.0 / 65535.0).abs() < 1e-6);
        assert_eq!(im.pixels[2], 1.0);
    }

    #[test]
    fn corrupt_and_missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = read_image(&p).unwrap_err().to_string();
        assert!(e.contains("broken.png") && e.contains("decode"), "{e}");
        let e = read_image(&dir.path().join("none.jpg"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.jpg") && e.contains("not found"), "{e}");
    }

    #[test]
    fn spacing_rescales_with_the_grid() {
        let s = PixelSpacing::isotropic(0.35).rescaled((1024, 1024), (256, 128));
        assert!((s.col_mm - 1.4).abs() < 1e-12 && (s.row_mm - 2.8).abs() < 1e-12);
    }
}

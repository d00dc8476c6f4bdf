//! PNG and JPEG files: radiographs decoded to greyscale, and PNGs written for masks,
//! overlays (8-bit) and DICOM exports (16-bit).

use crate::error::{IoError, Result};
use crate::xray::XrayImage;
use std::path::Path;

/// Read a PNG or JPEG radiograph (8 or 16 bit, grey or colour) as greyscale in [0, 1].
pub fn read_raster(path: &Path) -> Result<XrayImage> {
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

/// The most bytes an image may decode to: 2^26 16-bit samples (8192 x 8192 greyscale), the
/// bound DICOM frames have ([`crate::dicom::MAX_FRAME_SAMPLES`]). A header states any size:
/// without a bound a 235-byte JPEG declaring 20734 x 8329 colour pixels made the decoder
/// fill half a gigabyte (found by the `raster` fuzz target).
const MAX_DECODED_BYTES: u64 = 2 * crate::dicom::MAX_FRAME_SAMPLES as u64;

/// Decode a PNG/JPEG file (format from its content), naming the file in errors.
pub(crate) fn decode(path: &Path) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| IoError::fs(path, e))?
        .with_guessed_format()
        .map_err(|e| IoError::fs(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| IoError::Decode {
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

/// Write a 16-bit greyscale PNG atomically.
pub fn write_gray16_png(path: &Path, width: usize, height: usize, pixels: &[u16]) -> Result<()> {
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(
        width as u32,
        height as u32,
        pixels.to_vec(),
    )
    .ok_or_else(|| IoError::invalid(path, "pixel buffer does not match the image size"))?;
    write_png(path, image::DynamicImage::ImageLuma16(img))
}

/// Write a 16-bit RGB PNG atomically.
pub fn write_rgb16_png(path: &Path, width: usize, height: usize, rgb: &[u16]) -> Result<()> {
    let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(
        width as u32,
        height as u32,
        rgb.to_vec(),
    )
    .ok_or_else(|| IoError::invalid(path, "pixel buffer does not match the image size"))?;
    write_png(path, image::DynamicImage::ImageRgb16(img))
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
        let im = read_raster(&p8).unwrap();
        assert_eq!((im.width, im.height), (2, 1));
        assert_eq!(im.pixels, vec![0.0, 1.0]);

        let p16 = dir.path().join("b.png");
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0u16, 32768, 65535])
            .unwrap()
            .save(&p16)
            .unwrap();
        let im = read_raster(&p16).unwrap();
        assert!((im.pixels[1] - 32768.0 / 65535.0).abs() < 1e-6);
        assert_eq!(im.pixels[2], 1.0);
    }

    #[test]
    fn images_larger_than_the_bound_are_refused_before_decoding() {
        // The `raster` fuzz target's input: a 235-byte baseline JPEG whose frame header
        // declares 20734 x 8329 pixels of three components.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.jpg");
        std::fs::write(&path, include_bytes!("fuzz_inputs/timeout-df0d2b48.jpg")).unwrap();
        let err = read_raster(&path).unwrap_err().to_string();
        assert!(err.contains("huge.jpg") && err.contains("limit"), "{err}");
        // At the bound: 8192 x 8192 16-bit greyscale is read.
        let big = dir.path().join("big.png");
        write_gray16_png(&big, 8192, 8192, &vec![7u16; 8192 * 8192]).unwrap();
        assert_eq!(read_raster(&big).unwrap().width, 8192);
    }

    #[test]
    fn written_png_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mask.png");
        write_gray_png(&p, 2, 1, &[0, 255]).unwrap();
        assert_eq!(read_raster(&p).unwrap().pixels, vec![0.0, 1.0]);
        let e = write_rgb_png(&p, 2, 2, &[0; 3]).unwrap_err().to_string();
        assert!(
            e.contains("mask.png") && e.contains("does not match"),
            "{e}"
        );
    }
}

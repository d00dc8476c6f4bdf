//! Writing a frame as PNG: `--raw` (modality values as 16-bit greyscale, colour as 8- or
//! 16-bit RGB) and the display-ready greyscale radlens feeds its models.

use super::RawFrame;
use crate::error::{IoError, Result};
use crate::raster;
use crate::xray::XrayImage;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How modality values were fitted into a 16-bit PNG: `png = round(value) + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RawPng {
    /// Added so that negative values (e.g. Hounsfield units) fit; 0 when none are negative.
    pub offset: i64,
    /// True when some modality values were fractional (a non-integer rescale) and rounded.
    pub rounded: bool,
    /// Bits per sample in the PNG (8 or 16).
    pub bits: u16,
}

/// Write a raw frame: greyscale modality values as 16-bit PNG (shifted by the returned
/// offset when negative), colour as RGB at its own depth (8 bits or 16).
pub fn write_raw_png(frame: &RawFrame, path: &Path) -> Result<RawPng> {
    match frame {
        RawFrame::Grey {
            width,
            height,
            values,
        } => {
            let (lo, hi) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v.round()), b.max(v.round()))
                });
            if !lo.is_finite() || !hi.is_finite() {
                return Err(IoError::invalid(path, "the frame has no finite values"));
            }
            let offset = if lo < 0.0 { -lo } else { 0.0 };
            if hi + offset > 65535.0 {
                return Err(IoError::invalid(
                    path,
                    format!("modality values span {lo} to {hi}, more than a 16-bit PNG holds"),
                ));
            }
            let pixels: Vec<u16> = values.iter().map(|v| (v.round() + offset) as u16).collect();
            raster::write_gray16_png(path, *width, *height, &pixels)?;
            Ok(RawPng {
                offset: offset as i64,
                rounded: values.iter().any(|v| v.fract() != 0.0),
                bits: 16,
            })
        }
        RawFrame::Rgb {
            width,
            height,
            values,
            bits,
        } => {
            if *bits <= 8 {
                let rgb: Vec<u8> = values.iter().map(|&v| v.clamp(0, 255) as u8).collect();
                raster::write_rgb_png(path, *width, *height, &rgb)?;
            } else {
                // Samples of more than 16 bits keep their top 16.
                let shift = bits.saturating_sub(16);
                let rgb: Vec<u16> = values
                    .iter()
                    .map(|&v| (v.max(0) >> shift).min(65535) as u16)
                    .collect();
                raster::write_rgb16_png(path, *width, *height, &rgb)?;
            }
            Ok(RawPng {
                offset: 0,
                rounded: false,
                bits: if *bits <= 8 { 8 } else { 16 },
            })
        }
    }
}

/// Write the display-ready radiograph as 16-bit greyscale (reading it back gives the
/// model's input within 1/65535).
pub fn write_display_png(image: &XrayImage, path: &Path) -> Result<()> {
    let pixels: Vec<u16> = image
        .pixels
        .iter()
        .map(|&v| (f64::from(v.clamp(0.0, 1.0)) * 65535.0).round() as u16)
        .collect();
    raster::write_gray16_png(path, image.width, image.height, &pixels)
}

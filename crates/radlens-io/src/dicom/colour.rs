//! Colour: planar to interleaved samples, Y'CbCr to RGB (as pydicom converts), palette
//! colour lookup, and the luma that turns colour into the greyscale the models take.

use super::attrs::{Photometric, PixelLayout};
use super::lut::Lut;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// ITU-R BT.601 luma weights (R, G, B): the greyscale of a colour image.
pub const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// Samples in one native frame: YBR_FULL_422 stores two lumas per chroma pair, so
/// 2 samples per pixel rather than 3.
pub fn native_frame_samples(layout: &PixelLayout) -> usize {
    if layout.photometric == Photometric::YbrFull422 && layout.samples_per_pixel == 3 {
        layout.rows * layout.columns.div_ceil(2) * 4
    } else {
        layout.frame_samples()
    }
}

/// Interleave planar samples and convert Y'CbCr to RGB; greyscale and palette pass through.
pub fn to_rgb(
    samples: Vec<i64>,
    layout: &PixelLayout,
    photometric: &Photometric,
    planar: bool,
) -> Result<(Vec<i64>, Photometric), String> {
    if layout.samples_per_pixel == 1 {
        return match photometric {
            Photometric::Monochrome1 | Photometric::Monochrome2 | Photometric::Palette => {
                Ok((samples, photometric.clone()))
            }
            other => Err(format!(
                "photometric interpretation {other:?} with 1 sample per pixel"
            )),
        };
    }
    let pixels = layout.rows * layout.columns;
    let interleaved = if *photometric == Photometric::YbrFull422 && samples.len() != 3 * pixels {
        upsample_422(&samples, layout)
    } else if planar {
        (0..pixels)
            .flat_map(|i| [samples[i], samples[pixels + i], samples[2 * pixels + i]])
            .collect()
    } else {
        samples
    };
    match photometric {
        Photometric::Rgb | Photometric::YbrRct | Photometric::YbrIct => {
            Ok((interleaved, Photometric::Rgb))
        }
        Photometric::YbrFull | Photometric::YbrFull422 => Ok((
            ybr_full_to_rgb(&interleaved, layout.bits_stored),
            Photometric::Rgb,
        )),
        other => Err(format!(
            "photometric interpretation {other:?} with 3 samples per pixel is not supported"
        )),
    }
}

/// Y1 Y2 Cb Cr per pixel pair to Y Cb Cr per pixel (chroma repeated).
fn upsample_422(samples: &[i64], layout: &PixelLayout) -> Vec<i64> {
    let pairs = layout.columns.div_ceil(2);
    let mut out = Vec::with_capacity(layout.rows * layout.columns * 3);
    for row in samples.chunks_exact(pairs * 4).take(layout.rows) {
        for (x, c) in (0..layout.columns).map(|x| (x, &row[(x / 2) * 4..(x / 2) * 4 + 4])) {
            out.extend_from_slice(&[c[x % 2], c[2], c[3]]);
        }
    }
    out
}

/// Full-range Y'CbCr to RGB with the JFIF matrix, in f32 and rounded as pydicom does.
fn ybr_full_to_rgb(ybr: &[i64], bits: u16) -> Vec<i64> {
    let half = (1i64 << (bits - 1)) as f32;
    let max = ((1i64 << bits) - 1) as f32;
    let (g_cb, g_cr) = (-0.114f32 * 1.772 / 0.587, -0.299f32 * 1.402 / 0.587);
    ybr.chunks_exact(3)
        .flat_map(|p| {
            let (y, cb, cr) = (p[0] as f32, p[1] as f32 - half, p[2] as f32 - half);
            let rgb = [y + cr * 1.402, y + cb * g_cb + cr * g_cr, y + cb * 1.772];
            rgb.map(|v| (v + 0.5).floor().clamp(0.0, max) as i64)
        })
        .collect()
}

/// The red, green and blue palette colour LUTs (PS3.3 C.7.6.3.1.5; segmented palettes
/// are not supported).
pub fn palette(obj: &DefaultDicomObject) -> Result<[Lut; 3], String> {
    let read = |d, t, what| Lut::read(obj, d, t, what);
    Ok([
        read(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "red palette",
        )?,
        read(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "green palette",
        )?,
        read(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "blue palette",
        )?,
    ])
}

/// Palette indices to interleaved RGB and the bits of each colour value (8, else 16).
pub fn apply_palette(luts: &[Lut; 3], indices: &[i64]) -> (Vec<i64>, u16) {
    let rgb = indices
        .iter()
        .flat_map(|&v| luts.iter().map(move |l| l.apply(v as f64) as i64))
        .collect();
    (rgb, if luts[0].bits <= 8 { 8 } else { 16 })
}

/// Interleaved RGB with values up to `max` to greyscale in [0, 1].
pub fn luma(rgb: &[i64], max: f64) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((LUMA[0] * p[0] as f64 + LUMA[1] * p[1] as f64 + LUMA[2] * p[2] as f64) / max) as f32
        })
        .collect()
}

//! DICOM radiographs as PACS archives hold them: every transfer syntax dicom-rs has a codec
//! for (uncompressed little/big endian, deflate, RLE, JPEG baseline/extended/lossless,
//! JPEG-LS, JPEG 2000), greyscale, RGB, Y'CbCr and palette colour, multi-frame, 1 to 32-bit
//! samples, the modality LUT and the VOI transform.
//!
//! Three views of a frame: [`StoredFrame`] (stored values, what pydicom's `pixel_array`
//! gives), [`RawFrame`] (after the modality LUT, or colour), and the display-ready
//! [`XrayImage`] the models take (VOI transform, MONOCHROME1 inverted, colour to luma).

mod attrs;
mod colour;
mod export;
mod implicit_vr;
mod info;
mod jpeg12;
mod jpeg_rgb;
mod lengths;
mod lut;
mod pixels;
mod rle;

pub use attrs::{Photometric, PixelLayout, MAX_FRAME_SAMPLES};
pub use colour::LUMA;
pub use export::{write_display_png, write_raw_png, RawPng};
pub use info::{DicomInfo, TransferSyntaxInfo, WindowInfo};
pub use lut::{Lut, ModalityLut, Voi, Window, WindowFunction};
pub use pixels::StoredFrame;

use crate::error::{IoError, Result};
use crate::xray::{PixelSpacing, XrayImage};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use std::path::{Path, PathBuf};

/// One frame after the modality LUT: what `radlens dicom export --raw` writes.
#[derive(Debug, Clone, PartialEq)]
pub enum RawFrame {
    /// Greyscale modality values (Hounsfield units for CT; the stored values when the file
    /// has no modality LUT).
    Grey {
        width: usize,
        height: usize,
        values: Vec<f64>,
    },
    /// Interleaved RGB (Y'CbCr converted, palette looked up), each value below 2^bits.
    Rgb {
        width: usize,
        height: usize,
        values: Vec<i64>,
        bits: u16,
    },
}

/// An opened DICOM file; pixels are decoded frame by frame on request.
pub struct DicomFile {
    path: PathBuf,
    obj: DefaultDicomObject,
}

fn dicom_err(path: &Path, reason: impl std::fmt::Display) -> IoError {
    IoError::Dicom {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(crate) fn spacing_of(obj: &DefaultDicomObject) -> Option<PixelSpacing> {
    // Pixel Spacing is in the patient plane; Imager Pixel Spacing at the detector.
    // Projection radiographs often carry only the latter.
    [tags::PIXEL_SPACING, tags::IMAGER_PIXEL_SPACING]
        .into_iter()
        .find_map(|t| {
            let v = attrs::floats(obj, t)?;
            (v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0 && v[0].is_finite() && v[1].is_finite()).then(
                || PixelSpacing {
                    row_mm: v[0],
                    col_mm: v[1],
                },
            )
        })
}

impl DicomFile {
    /// Parse a DICOM file (with or without the 128-byte preamble).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| IoError::fs(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parse a DICOM file held in memory; `path` names it in errors. A parser panic on a
    /// hostile file becomes an error.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let vr = lengths::check(bytes).map_err(|e| dicom_err(path, e))?;
        let parse = || {
            match vr {
            lengths::DataSetVr::AsDeclared => OpenFileOptions::new()
                .from_reader(bytes)
                .map_err(|e| e.to_string()),
            lengths::DataSetVr::ImplicitUnderExplicit => implicit_vr::reparse(bytes).ok_or_else(
                || "the data set has no VRs although its transfer syntax is explicit VR, and cannot be read as implicit VR either".to_string(),
            ),
        }
        };
        match std::panic::catch_unwind(parse) {
            Ok(Ok(obj)) => Ok(Self {
                path: path.to_path_buf(),
                obj,
            }),
            Ok(Err(e)) => Err(dicom_err(path, e)),
            Err(_) => Err(dicom_err(
                path,
                "the DICOM parser failed on this file (panic)",
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identifiers, acquisition and pixel attributes, without decoding pixels.
    pub fn info(&self) -> DicomInfo {
        info::info(&self.obj)
    }

    /// The checked pixel layout (errors on missing or impossible image attributes).
    pub fn layout(&self) -> Result<PixelLayout> {
        if self
            .obj
            .element_opt(tags::PIXEL_DATA)
            .ok()
            .flatten()
            .is_none()
        {
            return Err(dicom_err(
                &self.path,
                "the file has no Pixel Data (7FE0,0010): it is not an image",
            ));
        }
        attrs::layout(&self.obj).map_err(|e| dicom_err(&self.path, e))
    }

    /// Stored values of frame `frame` (from 0), before any LUT.
    pub fn stored_frame(&self, frame: usize) -> Result<StoredFrame> {
        let layout = self.layout()?;
        let ts = info::transfer_syntax(self.obj.meta().transfer_syntax());
        if !ts.decodable {
            return Err(dicom_err(
                &self.path,
                format!(
                    "transfer syntax {} ({}) has no decoder in radlens",
                    ts.uid,
                    ts.name.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        pixels::stored_frame(&self.obj, &layout, frame).map_err(|e| dicom_err(&self.path, e))
    }

    /// Frame `frame` after the modality LUT (greyscale) or as RGB (colour and palette).
    pub fn raw_frame(&self, frame: usize) -> Result<RawFrame> {
        let s = self.stored_frame(frame)?;
        let (width, height) = (s.width, s.height);
        Ok(match s.photometric {
            Photometric::Palette => {
                let luts = colour::palette(&self.obj).map_err(|e| dicom_err(&self.path, e))?;
                let (values, bits) = colour::apply_palette(&luts, &s.values);
                RawFrame::Rgb {
                    width,
                    height,
                    values,
                    bits,
                }
            }
            _ if s.channels == 3 => RawFrame::Rgb {
                width,
                height,
                values: s.values,
                bits: s.bits,
            },
            _ => {
                let lut = ModalityLut::of(&self.obj).map_err(|e| dicom_err(&self.path, e))?;
                RawFrame::Grey {
                    width,
                    height,
                    values: s.values.iter().map(|&v| lut.apply(v as f64)).collect(),
                }
            }
        })
    }

    /// Frame `frame` as the display-ready radiograph the models take: VOI LUT sequence or
    /// first window (else min-max), MONOCHROME1 inverted, colour turned to BT.601 luma.
    pub fn display_frame(&self, frame: usize) -> Result<XrayImage> {
        let (width, height, pixels) = match self.raw_frame(frame)? {
            RawFrame::Grey {
                width,
                height,
                values,
            } => {
                let voi = Voi::of(&self.obj).map_err(|e| dicom_err(&self.path, e))?;
                let mut pixels = voi.apply(&values);
                if self.layout()?.photometric == Photometric::Monochrome1 {
                    pixels.iter_mut().for_each(|p| *p = 1.0 - *p);
                }
                (width, height, pixels)
            }
            RawFrame::Rgb {
                width,
                height,
                values,
                bits,
            } => {
                let max = ((1u64 << bits) - 1) as f64;
                (width, height, colour::luma(&values, max))
            }
        };
        Ok(XrayImage {
            width,
            height,
            pixels,
            spacing: spacing_of(&self.obj),
        })
    }
}

/// Read the first frame of a DICOM file as a display-ready radiograph.
pub fn read_dicom(path: &Path) -> Result<XrayImage> {
    DicomFile::open(path)?.display_frame(0)
}

#[cfg(test)]
pub(crate) mod tests;

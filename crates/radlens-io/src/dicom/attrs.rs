//! The Image Pixel module's attributes (PS3.3 C.7.6.3), read and checked before any pixel
//! is decoded, so that a hostile header is refused before it can ask for memory.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// The most samples per frame radlens decodes (2^26: 8192 x 8192 greyscale, 4729 x 4729
/// RGB; the largest detectors give about 4300 x 3500). A header asking for more is corrupt or
/// hostile, and is refused before anything is allocated.
pub const MAX_FRAME_SAMPLES: usize = 1 << 26;

/// How the samples of a pixel are to be read as colour (tag 0028,0004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Photometric {
    Monochrome1,
    Monochrome2,
    Rgb,
    /// Full-range Y'CbCr (JFIF); `YbrFull422` stores two lumas per chroma pair.
    YbrFull,
    YbrFull422,
    /// Lossless (RCT) and irreversible (ICT) colour transforms of JPEG 2000: the codec
    /// undoes them, so decoded samples are RGB.
    YbrRct,
    YbrIct,
    Palette,
    Other(String),
}

impl Photometric {
    pub fn parse(s: &str) -> Self {
        match s.trim_end_matches(['\0', ' ']).trim() {
            "MONOCHROME1" => Self::Monochrome1,
            "MONOCHROME2" => Self::Monochrome2,
            "RGB" => Self::Rgb,
            "YBR_FULL" => Self::YbrFull,
            "YBR_FULL_422" => Self::YbrFull422,
            "YBR_RCT" => Self::YbrRct,
            "YBR_ICT" => Self::YbrIct,
            "PALETTE COLOR" => Self::Palette,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn is_monochrome(&self) -> bool {
        matches!(self, Self::Monochrome1 | Self::Monochrome2)
    }
}

/// The layout of the stored pixels of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelLayout {
    pub rows: usize,
    pub columns: usize,
    pub samples_per_pixel: usize,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    /// Pixel Representation 1: two's complement samples.
    pub signed: bool,
    /// Planar Configuration 1: all reds, then all greens, then all blues.
    pub planar: bool,
    pub photometric: Photometric,
    pub frames: usize,
}

impl PixelLayout {
    /// Samples in one frame.
    pub fn frame_samples(&self) -> usize {
        self.rows * self.columns * self.samples_per_pixel
    }

    /// Bytes of one decoded frame (bits rounded up to whole bytes per sample).
    pub fn frame_bytes(&self) -> usize {
        self.frame_samples() * usize::from(self.bits_allocated.div_ceil(8))
    }
}

pub(crate) fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok()??.to_int::<i64>().ok()
}

pub(crate) fn string(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let s = obj.element_opt(tag).ok()??.to_str().ok()?;
    let s = s.trim_end_matches(['\0', ' ']).trim().to_string();
    (!s.is_empty()).then_some(s)
}

pub(crate) fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok()??.to_multi_float64().ok()
}

fn required(obj: &DefaultDicomObject, tag: Tag, name: &str) -> Result<i64, String> {
    match obj.element_opt(tag) {
        Ok(Some(e)) => e
            .to_int::<i64>()
            .map_err(|_| format!("{name} {tag} is not a number")),
        _ => Err(format!("{name} {tag} is missing")),
    }
}

/// Read and check the layout; every value that sizes a buffer is bounded here.
pub fn layout(obj: &DefaultDicomObject) -> Result<PixelLayout, String> {
    let rows = required(obj, tags::ROWS, "Rows")?;
    let columns = required(obj, tags::COLUMNS, "Columns")?;
    let samples = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits_allocated = required(obj, tags::BITS_ALLOCATED, "Bits Allocated")?;
    let bits_stored = int(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
    let representation = int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0);
    let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0);
    let frames = match string(obj, tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| format!("Number of Frames '{s}' is not a number"))?,
    };
    let photometric = string(obj, tags::PHOTOMETRIC_INTERPRETATION)
        .map(|s| Photometric::parse(&s))
        .ok_or("Photometric Interpretation (0028,0004) is missing")?;
    if !(1..=65535).contains(&rows) || !(1..=65535).contains(&columns) {
        return Err(format!(
            "{rows} rows x {columns} columns is not an image size"
        ));
    }
    if samples != 1 && samples != 3 {
        return Err(format!(
            "{samples} samples per pixel (only 1, greyscale or palette, and 3, colour, exist)"
        ));
    }
    if ![1, 8, 16, 32].contains(&bits_allocated) {
        return Err(format!(
            "{bits_allocated} bits allocated (radlens reads 1, 8, 16 and 32)"
        ));
    }
    if !(1..=bits_allocated).contains(&bits_stored) {
        return Err(format!(
            "{bits_stored} bits stored in {bits_allocated} bits allocated"
        ));
    }
    if !(0..=1).contains(&representation) || !(0..=1).contains(&planar) {
        return Err(format!(
            "Pixel Representation {representation} / Planar Configuration {planar} must be 0 or 1"
        ));
    }
    if frames < 1 || frames > i64::from(u32::MAX) {
        return Err(format!("{frames} frames"));
    }
    let layout = PixelLayout {
        rows: rows as usize,
        columns: columns as usize,
        samples_per_pixel: samples as usize,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        signed: representation == 1,
        planar: planar == 1,
        photometric,
        frames: frames as usize,
    };
    if layout.frame_samples() > MAX_FRAME_SAMPLES {
        return Err(format!(
            "one {}x{} frame of {} samples per pixel exceeds the limit of {} samples",
            layout.columns, layout.rows, layout.samples_per_pixel, MAX_FRAME_SAMPLES
        ));
    }
    Ok(layout)
}

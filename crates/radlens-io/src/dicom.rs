//! DICOM radiographs: modality LUT (rescale slope/intercept), VOI window,
//! MONOCHROME1 inversion and pixel spacing.

use crate::error::{IoError, Result};
use crate::xray::{PixelSpacing, XrayImage};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, DefaultDicomObject};
use dicom_pixeldata::PixelDecoder;
use std::path::Path;

/// A VOI LUT window (DICOM PS3.3 C.11.2.1.2, linear function).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    /// Map a modality value to [0, 1] with the DICOM linear window function.
    pub fn apply(&self, v: f64) -> f64 {
        let w = (self.width - 1.0).max(1e-6);
        (((v - (self.center - 0.5)) / w) + 0.5).clamp(0.0, 1.0)
    }
}

fn dicom_err(path: &Path, reason: impl std::fmt::Display) -> IoError {
    IoError::Dicom {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn first_f64s(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<Vec<f64>> {
    obj.element(tag).ok()?.to_multi_float64().ok()
}

fn spacing_of(obj: &DefaultDicomObject) -> Option<PixelSpacing> {
    // Pixel Spacing is in the patient plane; Imager Pixel Spacing at the detector.
    // Projection radiographs often carry only the latter.
    [tags::PIXEL_SPACING, tags::IMAGER_PIXEL_SPACING]
        .into_iter()
        .find_map(|t| {
            let v = first_f64s(obj, t)?;
            (v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0).then(|| PixelSpacing {
                row_mm: v[0],
                col_mm: v[1],
            })
        })
}

/// Read the first frame of a DICOM file as a display-ready radiograph.
///
/// Steps: modality LUT (rescale slope/intercept); the file's first VOI window
/// if present, else the frame's min-max range; inversion for MONOCHROME1 so
/// that bone is bright; pixel spacing from Pixel Spacing or Imager Pixel Spacing.
pub fn read_dicom(path: &Path) -> Result<XrayImage> {
    let obj = open_file(path).map_err(|e| dicom_err(path, e))?;
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| dicom_err(path, format!("cannot decode pixel data: {e}")))?;
    if decoded.samples_per_pixel() != 1 {
        return Err(dicom_err(
            path,
            format!(
                "{} samples per pixel; radlens reads greyscale radiographs only",
                decoded.samples_per_pixel()
            ),
        ));
    }
    let (width, height) = (decoded.columns() as usize, decoded.rows() as usize);
    // Modality values (rescale applied by dicom-pixeldata's default pipeline).
    let values: Vec<f32> = decoded
        .to_vec_frame(0)
        .map_err(|e| dicom_err(path, format!("cannot convert pixel data: {e}")))?;
    if values.len() != width * height || values.is_empty() {
        return Err(dicom_err(
            path,
            format!("{} pixels for {width}x{height}", values.len()),
        ));
    }
    let window = match (
        first_f64s(&obj, tags::WINDOW_CENTER),
        first_f64s(&obj, tags::WINDOW_WIDTH),
    ) {
        (Some(c), Some(w)) if !c.is_empty() && !w.is_empty() && w[0] > 0.0 => Some(Window {
            center: c[0],
            width: w[0],
        }),
        _ => None,
    };
    let monochrome1 = obj
        .element(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .and_then(|e| e.to_str().ok())
        .is_some_and(|s| s.trim() == "MONOCHROME1");
    let pixels = to_display(&values, window, monochrome1);
    Ok(XrayImage {
        width,
        height,
        pixels,
        spacing: spacing_of(&obj),
    })
}

/// Window (or min-max normalise) modality values and invert MONOCHROME1.
pub fn to_display(values: &[f32], window: Option<Window>, monochrome1: bool) -> Vec<f32> {
    let map: Box<dyn Fn(f64) -> f64> = match window {
        Some(w) => Box::new(move |v| w.apply(v)),
        None => {
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let span = ((hi - lo) as f64).max(1e-12);
            Box::new(move |v| (v - lo as f64) / span)
        }
    };
    values
        .iter()
        .map(|&v| {
            let d = map(v as f64);
            (if monochrome1 { 1.0 - d } else { d }) as f32
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    /// Write a small uncompressed 16-bit DICOM for tests.
    pub fn write_test_dicom(
        path: &Path,
        w: u16,
        h: u16,
        pixels: &[u16],
        extra: Vec<DataElement<InMemDicomObject>>,
        photometric: &str,
    ) {
        let mut obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.1.1"),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)),
            DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(h)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(w)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12_u16)),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11_u16)),
            DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(0_u16),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(pixels.iter().copied().collect()),
            ),
        ]);
        for e in extra {
            obj.put(e);
        }
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.1")
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1.1")
            .media_storage_sop_instance_uid("1.2.3.4.5");
        obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
    }

    #[test]
    fn rescale_window_and_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dcm");
        // raw 0, 100, 200, 300 -> modality 2*raw - 100 = -100, 100, 300, 500
        write_test_dicom(
            &p,
            2,
            2,
            &[0, 100, 200, 300],
            vec![
                DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"),
                DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-100"),
                DataElement::new(tags::WINDOW_CENTER, VR::DS, "200"),
                DataElement::new(tags::WINDOW_WIDTH, VR::DS, "401"),
                DataElement::new(tags::IMAGER_PIXEL_SPACING, VR::DS, "0.143\\0.15"),
            ],
            "MONOCHROME2",
        );
        let im = read_dicom(&p).unwrap();
        assert_eq!((im.width, im.height), (2, 2));
        // window: (v - 199.5)/400 + 0.5
        let expect = [
            0.0,
            (100.0 - 199.5) / 400.0 + 0.5,
            (300.0 - 199.5) / 400.0 + 0.5,
            1.0,
        ];
        for (a, b) in im.pixels.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
        let s = im.spacing.unwrap();
        assert!((s.row_mm - 0.143).abs() < 1e-9 && (s.col_mm - 0.15).abs() < 1e-9);
    }

    #[test]
    fn monochrome1_is_inverted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dcm");
        write_test_dicom(&p, 3, 1, &[0, 50, 100], vec![], "MONOCHROME1");
        let im = read_dicom(&p).unwrap();
        assert_eq!(im.pixels, vec![1.0, 0.5, 0.0]);
        assert!(im.spacing.is_none());
    }
}

//! What `radlens dicom info` shows: the identifiers, acquisition and pixel attributes of a
//! file, read without decoding its pixels.

use super::attrs::{floats, int, string};
use super::lut::Window;
use super::spacing_of;
use crate::xray::PixelSpacing;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use serde::{Deserialize, Serialize};

/// A file's transfer syntax: its UID, its name, and whether radlens can decode its pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSyntaxInfo {
    pub uid: String,
    /// The registry's name, or `None` for a UID dicom-rs does not know.
    pub name: Option<String>,
    /// False for a compressed syntax with no codec here (e.g. JPEG XL, HTJ2K, MPEG video).
    pub decodable: bool,
}

/// A first window centre/width as the file records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowInfo {
    pub center: f64,
    pub width: f64,
}

/// The attributes `radlens dicom info` prints; absent attributes are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DicomInfo {
    pub patient_id: Option<String>,
    /// Study Date (0008,0020) as recorded, `YYYYMMDD`.
    pub study_date: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub view_position: Option<String>,
    pub body_part_examined: Option<String>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub samples_per_pixel: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub bits_stored: Option<i64>,
    pub pixel_representation: Option<i64>,
    pub photometric_interpretation: Option<String>,
    pub transfer_syntax: TransferSyntaxInfo,
    pub pixel_spacing: Option<PixelSpacing>,
    pub rescale_slope: Option<f64>,
    pub rescale_intercept: Option<f64>,
    pub window: Option<WindowInfo>,
    pub has_voi_lut_sequence: bool,
    pub has_modality_lut_sequence: bool,
    pub has_pixel_data: bool,
}

/// Transfer syntax UID, name and decodability from dicom-rs' registry.
pub fn transfer_syntax(uid: &str) -> TransferSyntaxInfo {
    let uid = uid.trim_end_matches(['\0', ' ']).to_string();
    let ts = TransferSyntaxRegistry.get(&uid);
    TransferSyntaxInfo {
        name: ts.map(|t| t.name().to_string()),
        decodable: ts.is_some_and(|t| t.is_codec_free() || t.can_decode_all()),
        uid,
    }
}

pub fn info(obj: &DefaultDicomObject) -> DicomInfo {
    let first = |tag| floats(obj, tag).and_then(|v| v.first().copied());
    DicomInfo {
        patient_id: string(obj, tags::PATIENT_ID),
        study_date: string(obj, tags::STUDY_DATE),
        study_instance_uid: string(obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: string(obj, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: string(obj, tags::SOP_INSTANCE_UID),
        sop_class_uid: string(obj, tags::SOP_CLASS_UID),
        modality: string(obj, tags::MODALITY),
        view_position: string(obj, tags::VIEW_POSITION),
        body_part_examined: string(obj, tags::BODY_PART_EXAMINED),
        rows: int(obj, tags::ROWS),
        columns: int(obj, tags::COLUMNS),
        number_of_frames: string(obj, tags::NUMBER_OF_FRAMES).and_then(|s| s.parse().ok()),
        samples_per_pixel: int(obj, tags::SAMPLES_PER_PIXEL),
        bits_allocated: int(obj, tags::BITS_ALLOCATED),
        bits_stored: int(obj, tags::BITS_STORED),
        pixel_representation: int(obj, tags::PIXEL_REPRESENTATION),
        photometric_interpretation: string(obj, tags::PHOTOMETRIC_INTERPRETATION),
        transfer_syntax: transfer_syntax(obj.meta().transfer_syntax()),
        pixel_spacing: spacing_of(obj),
        rescale_slope: first(tags::RESCALE_SLOPE),
        rescale_intercept: first(tags::RESCALE_INTERCEPT),
        window: Window::of(obj).map(|w| WindowInfo {
            center: w.center,
            width: w.width,
        }),
        has_voi_lut_sequence: obj
            .element_opt(tags::VOILUT_SEQUENCE)
            .ok()
            .flatten()
            .is_some(),
        has_modality_lut_sequence: obj
            .element_opt(tags::MODALITY_LUT_SEQUENCE)
            .ok()
            .flatten()
            .is_some(),
        has_pixel_data: obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_some(),
    }
}

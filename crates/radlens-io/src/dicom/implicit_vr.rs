//! Files whose data set is written in implicit VR although their meta group names an
//! explicit VR transfer syntax (some writers, e.g. early highdicom, did this for JPEG).
//! pydicom reads them by looking at the first element; radlens does the same (the length
//! check finds the element without a VR) and keeps the meta group's transfer syntax for the
//! pixel codec.

use dicom_object::{DefaultDicomObject, FileMetaTable, InMemDicomObject};
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// The file read with an implicit VR little-endian data set, when its meta group names
/// explicit VR little endian or an encapsulated (compressed) syntax, which all are explicit
/// VR little endian.
pub fn reparse(bytes: &[u8]) -> Option<DefaultDicomObject> {
    let mut rest = match bytes.get(128..132) {
        Some(b"DICM") => &bytes[128..],
        _ => bytes,
    };
    let meta = FileMetaTable::from_reader(&mut rest).ok()?;
    let ts = TransferSyntaxRegistry.get(meta.transfer_syntax())?;
    let explicit_le =
        ts.uid() == EXPLICIT_VR_LITTLE_ENDIAN.uid() || ts.is_encapsulated_pixel_data();
    if !explicit_le {
        return None;
    }
    let obj =
        InMemDicomObject::read_dataset_with_ts(rest, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).ok()?;
    Some(obj.with_exact_meta(meta))
}

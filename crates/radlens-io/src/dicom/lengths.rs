//! Declared lengths checked against the file before dicom-rs reads it. dicom-rs reserves
//! an element's declared length before reading its value, so a 1 KB file declaring a 4 GB
//! element would ask for 4 GB; here every defined length of the meta group and data set
//! (sequences and items included) must fit in the bytes that follow it.
//!
//! The walk reads element headers only. Anything it cannot follow (a file that is not DICOM,
//! a truncated header) is left to dicom-rs, which reports it.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: u16 = 0xE000;
const ITEM_DELIMITER: u16 = 0xE00D;
const SEQUENCE_DELIMITER: u16 = 0xE0DD;
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: [&str; 2] = ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"];
/// The most a deflated data set may inflate to (1 GiB; deflate cannot expand more than
/// about 1000-fold, so only files over 1 MB come near).
const MAX_INFLATED: u64 = 1 << 30;

/// How a data set's element headers are encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

/// How the data set's elements are encoded, as far as the walk could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSetVr {
    /// As the transfer syntax says (or the walk could not tell).
    AsDeclared,
    /// Implicit VR although the transfer syntax says explicit: the first element has no
    /// VR. dicom-rs would read its value length from the wrong bytes (up to 4 GB), so such
    /// a file must go straight to [`super::implicit_vr`].
    ImplicitUnderExplicit,
}

/// Every defined length in the file fits in what follows it.
pub fn check(bytes: &[u8]) -> Result<DataSetVr, String> {
    let start = match (bytes.get(128..132), bytes.get(..4)) {
        (Some(b"DICM"), _) => 132,
        (_, Some(b"DICM")) => 4,
        _ => return Ok(DataSetVr::AsDeclared),
    };
    let meta = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    // dicom-rs reads the meta group as far as its group length (0002,0000) says, whatever
    // the groups of the elements inside (a mutated file put a data set element there, so a
    // walk that stopped at the first other group inflated the wrong bytes); a meta group
    // without a group length it refuses, and the walk then stops where group 0002 ends.
    let meta_end = match meta_group_length(bytes, start) {
        Some((value_end, len)) => Stop::At(value_end.saturating_add(len as usize)),
        None => Stop::OutsideGroup(0x0002),
    };
    let (data_set_start, ts) = walk(bytes, start, meta, meta_end)?;
    let ts = ts.unwrap_or_default();
    let rest = &bytes[data_set_start..];
    let inflated;
    let data_set = if DEFLATED.contains(&ts.as_str()) {
        let mut buf = Vec::new();
        // dicom-rs reads (and reserves) what inflates before a corrupt part, so a corrupt
        // stream is refused here.
        flate2::read::DeflateDecoder::new(rest)
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("the deflated data set is corrupt: {e}"))?;
        if buf.len() as u64 > MAX_INFLATED {
            return Err(format!(
                "the deflated data set inflates past {MAX_INFLATED} bytes"
            ));
        }
        inflated = buf;
        &inflated[..]
    } else {
        rest
    };
    // A first element without a VR: an implicit VR data set under an explicit VR syntax,
    // which `implicit_vr` re-reads as such.
    let first_has_vr = data_set
        .get(4..6)
        .is_none_or(|vr| vr.iter().all(u8::is_ascii_uppercase));
    let explicit_declared = ts != IMPLICIT_VR_LE;
    let encoding = Encoding {
        explicit_vr: explicit_declared && first_has_vr,
        big_endian: ts == EXPLICIT_VR_BE,
    };
    walk(data_set, 0, encoding, Stop::AtEnd)?;
    Ok(if explicit_declared && !first_has_vr {
        DataSetVr::ImplicitUnderExplicit
    } else {
        DataSetVr::AsDeclared
    })
}

/// Where the meta group length's value ends, and the length, read as dicom-rs reads them:
/// the first element must be (0002,0000) with a 4-byte value, whatever VR its header gives
/// (a mutated file gave it SL, and the walk took the group to end elsewhere than dicom-rs
/// did).
fn meta_group_length(b: &[u8], start: usize) -> Option<(usize, u32)> {
    let h = b.get(start..start + 8)?;
    if h[..4] != [0x02, 0, 0, 0] {
        return None;
    }
    let vr = VR::from_binary([h[4], h[5]]).unwrap_or(VR::UN);
    let (value_at, len) = if long_length(vr) {
        (
            start + 12,
            u32::from_le_bytes(b.get(start + 8..start + 12)?.try_into().ok()?),
        )
    } else {
        (start + 8, u32::from(u16::from_le_bytes([h[6], h[7]])))
    };
    let value = b.get(value_at..value_at + 4).filter(|_| len == 4)?;
    Some((value_at + 4, u32::from_le_bytes(value.try_into().ok()?)))
}

/// Where a walk over element headers stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At the end of the buffer (a data set).
    AtEnd,
    /// At the first element at or past this offset (a meta group of known length).
    At(usize),
    /// At the first element of another group (a meta group without a group length).
    OutsideGroup(u16),
}

/// Walk element headers from `at` until `stop`. Returns where the walk stopped and, in the
/// meta group, the transfer syntax UID.
fn walk(
    b: &[u8],
    mut at: usize,
    enc: Encoding,
    stop: Stop,
) -> Result<(usize, Option<String>), String> {
    let mut ts = None;
    // Inside encapsulated Pixel Data items are fragments of compressed data, not data sets.
    let mut in_fragments = false;
    while let Some(header) = b.get(at..at + 8) {
        let u16_at = |i: usize| {
            let v = [header[i], header[i + 1]];
            if enc.big_endian {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }
        };
        let (group, element) = (u16_at(0), u16_at(2));
        match stop {
            Stop::At(end) if at >= end => break,
            Stop::OutsideGroup(g) if g != group => break,
            _ => {}
        }
        let u32_at = |i: usize| -> Option<u32> {
            let v: [u8; 4] = b.get(at + i..at + i + 4)?.try_into().ok()?;
            Some(if enc.big_endian {
                u32::from_be_bytes(v)
            } else {
                u32::from_le_bytes(v)
            })
        };
        // Items and delimiters carry no VR in any encoding. Any other (FFFE,xxxx) tag is
        // an ordinary element to dicom-rs (a mutated item delimiter, (FFFE,000D), declared
        // 3.7 GB in a file the `dicom` fuzz target found), so it is checked like one.
        if group == 0xFFFE && [ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER].contains(&element) {
            let len = u32_at(4).unwrap_or(0);
            at += 8;
            if element == SEQUENCE_DELIMITER {
                in_fragments = false;
            } else if element == ITEM && len != UNDEFINED {
                fits(b, at, len, (group, element))?;
                if in_fragments {
                    at += len as usize;
                }
            }
            continue;
        }
        let (header_len, len, vr) = if enc.explicit_vr {
            // As dicom-rs reads it: an unknown VR is UN, with a 4-byte length.
            let vr = VR::from_binary([header[4], header[5]]).unwrap_or(VR::UN);
            if long_length(vr) {
                let Some(len) = u32_at(8) else { break };
                (12, len, vr)
            } else {
                (8, u32::from(u16_at(6)), vr)
            }
        } else {
            (8, u32_at(4).unwrap_or(0), implicit_vr((group, element)))
        };
        if group == 0x0002 && element == 0x0010 && len != UNDEFINED {
            ts = b
                .get(at + header_len..at + header_len + len as usize)
                .map(|v| {
                    String::from_utf8_lossy(v)
                        .trim_end_matches(['\0', ' '])
                        .to_string()
                });
        }
        at += header_len;
        if len == UNDEFINED {
            // A sequence (SQ, or UN holding one) or encapsulated pixel data: walk into it.
            in_fragments = (group, element) == PIXEL_DATA;
            continue;
        }
        fits(b, at, len, (group, element))?;
        whole_values(len, vr, (group, element))?;
        if vr != VR::SQ {
            at += len as usize;
        }
    }
    Ok((at, ts))
}

/// The VR dicom-rs gives an element of an implicit VR data set: OW for pixel and overlay
/// data, else the dictionary's (the first of "US or SS" and the like), else UN.
fn implicit_vr((group, element): (u16, u16)) -> VR {
    if (group, element) == PIXEL_DATA || (group >> 8 == 0x60 && element == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(Tag(group, element))
        .map_or(VR::UN, |e| e.vr().relaxed())
}

/// The size of one value of a binary VR holding fixed-size numbers or tags.
fn value_size(vr: VR) -> Option<u32> {
    use VR::*;
    match vr {
        US | SS | OW => Some(2),
        UL | SL | FL | AT | OL | OF => Some(4),
        FD | OD | SV | UV | OV => Some(8),
        _ => None,
    }
}

/// A binary value's length is a whole number of its values. dicom-rs reads
/// `len / size` values but counts `len` bytes as read, so a remainder leaves it reading
/// every later element from the wrong place (the fuzzer found a 9.7 KB file whose group
/// length of 2 bytes made it take pixel values for a 3.9 GB length).
fn whole_values(len: u32, vr: VR, (group, element): (u16, u16)) -> Result<(), String> {
    match value_size(vr) {
        Some(size) if !len.is_multiple_of(size) => Err(format!(
            "element ({group:04X},{element:04X}) ({vr}) declares {len} bytes, not a whole \
             number of its {size}-byte values: the file is corrupt"
        )),
        _ => Ok(()),
    }
}

/// VRs whose explicit header has a 4-byte length.
fn long_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
    )
}

fn fits(b: &[u8], at: usize, len: u32, (group, element): (u16, u16)) -> Result<(), String> {
    let remaining = b.len().saturating_sub(at);
    if len as usize > remaining {
        return Err(format!(
            "element ({group:04X},{element:04X}) at byte {at} declares {len} bytes, only \
             {remaining} follow: the file is truncated or corrupt"
        ));
    }
    Ok(())
}

//! Stored pixel values of one frame: native (uncompressed) data sliced and unpacked here,
//! encapsulated data (JPEG, JPEG-LS, JPEG 2000, RLE) through dicom-rs' codecs (12-bit DCT
//! JPEG through libjpeg-turbo), with any codec panic caught and turned into an error.

use super::attrs::{Photometric, PixelLayout};
use super::{colour, jpeg12, jpeg_rgb, rle};
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// JPEG baseline and extended: the DCT processes whose decoders guess a colour space.
const JPEG_DCT: [&str; 2] = ["1.2.840.10008.1.2.4.50", JPEG_EXTENDED];
/// JPEG lossless (process 14, and its first-order prediction): SOF headers like the DCT's.
const JPEG_LOSSLESS: [&str; 2] = ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];

/// One frame's stored values (before the modality LUT), row-major; colour samples are
/// interleaved RGB (YBR converted, palette indices kept as indices).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFrame {
    pub width: usize,
    pub height: usize,
    /// 1 (greyscale or palette index) or 3 (RGB).
    pub channels: usize,
    pub values: Vec<i64>,
    /// Significant bits of each value (Bits Stored).
    pub bits: u16,
    /// How to read the values after decoding: YBR has become RGB.
    pub photometric: Photometric,
}

/// Decode frame `frame` (from 0) of a file whose layout was checked.
pub fn stored_frame(
    obj: &DefaultDicomObject,
    layout: &PixelLayout,
    frame: usize,
) -> Result<StoredFrame, String> {
    if frame >= layout.frames {
        return Err(format!(
            "frame {frame} requested, the file holds {} (numbered from 0)",
            layout.frames
        ));
    }
    let element = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or("the file has no Pixel Data (7FE0,0010): it is not an image")?;
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    let (samples, photometric, planar) = match element.value() {
        Value::Primitive(p) => {
            let bytes = native_bytes(p, element.header().vr(), layout, ts);
            (
                native_samples(&bytes, layout, frame)?,
                layout.photometric.clone(),
                layout.planar,
            )
        }
        Value::PixelSequence(seq) if ts == RLE_LOSSLESS && layout.bits_allocated == 32 => {
            let fragment = seq
                .fragments()
                .get(frame)
                .ok_or_else(|| format!("no RLE fragment for frame {frame}"))?;
            let bytes = rle::decode_frame(fragment, layout)?;
            let n = layout.frame_samples();
            (
                unpack(&bytes, layout, n)?,
                layout.photometric.clone(),
                false,
            )
        }
        Value::PixelSequence(seq) if ts == JPEG_EXTENDED && layout.bits_stored > 8 => {
            let jpeg = frame_fragment(seq.fragments(), layout.frames, frame).ok_or_else(|| {
                format!(
                    "{} fragments for {} frames: cannot tell which hold frame {frame}",
                    seq.fragments().len(),
                    layout.frames
                )
            })?;
            let bytes =
                jpeg12::decode(&jpeg, layout.columns, layout.rows, layout.samples_per_pixel)
                    .map_err(|e| format!("frame {frame}: {e}"))?;
            let pi = match layout.samples_per_pixel {
                1 => layout.photometric.clone(),
                _ => Photometric::Rgb,
            };
            (unpack(&bytes, layout, layout.frame_samples())?, pi, false)
        }
        Value::PixelSequence(seq) => {
            if JPEG_DCT.contains(&ts) || JPEG_LOSSLESS.contains(&ts) {
                if let Some(jpeg) = frame_fragment(seq.fragments(), layout.frames, frame) {
                    jpeg_rgb::check_size(&jpeg, layout.rows, layout.columns)
                        .map_err(|e| format!("frame {frame}: {e}"))?;
                }
            }
            let unstated_rgb = (JPEG_DCT.contains(&ts) && layout.photometric == Photometric::Rgb)
                .then(|| frame_fragment(seq.fragments(), layout.frames, frame))
                .flatten()
                .and_then(|jpeg| jpeg_rgb::decode_unstated_rgb(&jpeg));
            let (bytes, decoded_pi) = match unstated_rgb {
                Some(rgb) => (
                    rgb.map_err(|e| format!("frame {frame}: {e}"))?,
                    Photometric::Rgb,
                ),
                None => {
                    if ts == RLE_LOSSLESS {
                        rle::check_headers(seq.fragments())?;
                    }
                    encapsulated_frame(obj, layout, frame)?
                }
            };
            // RLE keeps the file's colour space; the image codecs return RGB.
            let pi = if ts == RLE_LOSSLESS || layout.samples_per_pixel == 1 {
                layout.photometric.clone()
            } else {
                decoded_pi
            };
            (unpack(&bytes, layout, layout.frame_samples())?, pi, false)
        }
        Value::Sequence(_) => return Err("Pixel Data (7FE0,0010) is a sequence".into()),
    };
    let (values, photometric) = colour::to_rgb(samples, layout, &photometric, planar)?;
    Ok(StoredFrame {
        width: layout.columns,
        height: layout.rows,
        channels: layout.samples_per_pixel,
        values,
        bits: layout.bits_stored,
        photometric,
    })
}

/// Native pixel bytes in little-endian order. In big-endian files dicom-rs keeps OB/OW
/// values it reads as bytes in file order (swap each sample's bytes; 8-bit samples in OW
/// words swap pairwise) and OW values it reads as words in native order (32-bit samples
/// then need their two words swapped).
fn native_bytes(p: &PrimitiveValue, vr: VR, layout: &PixelLayout, ts: &str) -> Vec<u8> {
    let mut bytes = p.to_bytes().into_owned();
    if ts != EXPLICIT_VR_BIG_ENDIAN {
        return bytes;
    }
    match (p, layout.bits_allocated) {
        (PrimitiveValue::U8(_), 16) => bytes.chunks_exact_mut(2).for_each(|c| c.reverse()),
        (PrimitiveValue::U8(_), 32) => bytes.chunks_exact_mut(4).for_each(|c| c.reverse()),
        (PrimitiveValue::U8(_), 8) if vr == VR::OW => {
            bytes.chunks_exact_mut(2).for_each(|c| c.reverse())
        }
        (PrimitiveValue::U16(_), 32) => bytes.chunks_exact_mut(4).for_each(|c| {
            c.swap(0, 2);
            c.swap(1, 3);
        }),
        _ => {}
    }
    bytes
}

/// Slice frame `frame` out of native pixel data and read its samples.
fn native_samples(bytes: &[u8], layout: &PixelLayout, frame: usize) -> Result<Vec<i64>, String> {
    let n = colour::native_frame_samples(layout);
    if layout.bits_allocated == 1 {
        // Bits run on across frames, least significant bit first.
        let first = frame * n;
        let needed = (first + n).div_ceil(8);
        if bytes.len() < needed {
            return Err(truncated(bytes.len(), needed, frame));
        }
        return Ok((first..first + n)
            .map(|i| i64::from((bytes[i / 8] >> (i % 8)) & 1))
            .collect());
    }
    let size = n * usize::from(layout.bits_allocated / 8);
    let start = frame * size;
    let chunk = bytes
        .get(start..start + size)
        .ok_or_else(|| truncated(bytes.len(), start + size, frame))?;
    unpack(chunk, layout, n)
}

fn truncated(have: usize, needed: usize, frame: usize) -> String {
    format!("Pixel Data holds {have} bytes, frame {frame} needs {needed}: the file is truncated or its image attributes are wrong")
}

/// Read little-endian samples, keeping the `bits_stored` low bits (sign-extended when
/// the pixel representation is signed).
fn unpack(bytes: &[u8], layout: &PixelLayout, n: usize) -> Result<Vec<i64>, String> {
    let width = usize::from(layout.bits_allocated.div_ceil(8));
    if bytes.len() < n * width {
        return Err(format!(
            "the codec returned {} bytes for a frame of {} bytes",
            bytes.len(),
            n * width
        ));
    }
    let bits = u32::from(layout.bits_stored);
    let shift = 64 - bits;
    let read = |raw: u64| -> i64 {
        if layout.signed {
            ((raw << shift) as i64) >> shift
        } else {
            (raw & (u64::MAX >> shift)) as i64
        }
    };
    Ok(match width {
        1 => bytes[..n].iter().map(|&b| read(u64::from(b))).collect(),
        2 => bytes[..2 * n]
            .chunks_exact(2)
            .map(|c| read(u64::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        _ => bytes[..4 * n]
            .chunks_exact(4)
            .map(|c| read(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
    })
}

/// The encoded bytes of frame `frame` when fragments map to frames simply: one frame in
/// any number of fragments, or one fragment per frame; `None` otherwise.
fn frame_fragment(fragments: &[Vec<u8>], frames: usize, frame: usize) -> Option<Vec<u8>> {
    if frames == 1 {
        Some(fragments.concat())
    } else if fragments.len() == frames {
        fragments.get(frame).cloned()
    } else {
        None
    }
}

/// Run dicom-rs' decoder for one encapsulated frame; a panic inside a codec becomes an error.
fn encapsulated_frame(
    obj: &DefaultDicomObject,
    layout: &PixelLayout,
    frame: usize,
) -> Result<(Vec<u8>, Photometric), String> {
    let run = std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(frame as u32).map(|d| {
            let pi = Photometric::parse(d.photometric_interpretation().as_ref());
            (d.into_data(), pi)
        })
    });
    match std::panic::catch_unwind(run) {
        Ok(Ok((data, pi))) => {
            if data.len() < layout.frame_bytes() {
                return Err(format!(
                    "the codec returned {} bytes for frame {frame}, {} expected from the image attributes",
                    data.len(),
                    layout.frame_bytes()
                ));
            }
            Ok((data, pi))
        }
        Ok(Err(e)) => Err(format!("cannot decode frame {frame}: {}", error_chain(&e))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("the codec failed on frame {frame} (panic: {msg})"))
        }
    }
}

/// An error and its causes on one line (dicom-rs' messages are terse at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

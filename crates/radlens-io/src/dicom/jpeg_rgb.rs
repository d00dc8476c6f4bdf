//! RGB JPEG frames whose stream does not say its colour space. A JPEG decoder takes three
//! components as Y'CbCr unless a JFIF or Adobe APP14 marker or the component ids (1,2,3 /
//! 'R','G','B') say otherwise; such a stream inside a DICOM file whose Photometric
//! Interpretation is RGB holds RGB samples (PS3.5 8.2.1: the attribute describes the
//! compressed data), so it is decoded without a colour transform, as pydicom does.
//!
//! These frames go through zune-jpeg (image's JPEG decoder): jpeg-decoder, dicom-rs' codec,
//! loses detail on them (up to 110 of 255 off pydicom on `SC_jpeg_no_color_transform.dcm`,
//! where zune-jpeg is within 1).
//!
//! The same header scan gives the frame size the stream states, which must be the DICOM
//! image's: a decoder fills what the stream states (a 4 KB file whose attributes said
//! 256 x 256 held a stream of 256 x 64000, found by the `dicom` fuzz target).

use std::io::Cursor;
use std::ops::Range;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

const SOI: u8 = 0xD8;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP14: u8 = 0xEE;
/// An Adobe APP14 body carries its transform flag in byte 11; shorter ones say nothing
/// (libjpeg ignores them too).
const ADOBE_BODY: usize = 12;

/// What the headers before the first scan say about the stream's colour space.
#[derive(Debug, PartialEq, Eq)]
struct Headers {
    /// A JFIF or Adobe marker, or component ids a decoder recognises; without any, a
    /// decoder guesses Y'CbCr.
    colour_stated: bool,
    /// Byte ranges of APP14 segments too short to be read (zune-jpeg refuses the stream).
    short_app14: Vec<Range<usize>>,
    /// Rows and columns of the frame header (SOF), if one came before the first scan.
    size: Option<(usize, usize)>,
}

/// Scan the marker segments before the first scan (no entropy-coded data is read).
fn scan_headers(jpeg: &[u8]) -> Option<Headers> {
    if jpeg.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut at = 2;
    let mut headers = Headers {
        colour_stated: false,
        short_app14: Vec::new(),
        size: None,
    };
    loop {
        let marker = *jpeg.get(at + 1)?;
        if jpeg[at] != 0xFF {
            return None;
        }
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        if len < 2 {
            return None;
        }
        let body = jpeg.get(at + 4..at + 2 + len)?;
        match marker {
            APP0 if body.starts_with(b"JFIF\0") => headers.colour_stated = true,
            APP14 if body.len() >= ADOBE_BODY => {
                headers.colour_stated |= body.starts_with(b"Adobe");
            }
            APP14 => headers.short_app14.push(at..at + 2 + len),
            // Frame headers: precision, rows, columns, components. The colour ids matter
            // for the baseline, extended and lossless Huffman processes.
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&marker) => {
                let dim = |i: usize| usize::from(u16::from_be_bytes([body[i], body[i + 1]]));
                headers.size = (body.len() >= 5).then(|| (dim(1), dim(3)));
                if marker <= 0xC3 {
                    let ids: Vec<u8> = body.get(6..)?.chunks_exact(3).map(|c| c[0]).collect();
                    headers.colour_stated |=
                        matches!(ids.as_slice(), [1, 2, 3] | [b'R', b'G', b'B']);
                }
            }
            SOS => return Some(headers),
            _ => {}
        }
        at += 2 + len;
    }
}

/// Refuse a JPEG stream whose frame header states another size than the DICOM image's
/// `rows` x `columns`, before a decoder allocates what the stream states. A stream whose
/// headers cannot be read is left to the codec, which reports it.
pub fn check_size(jpeg: &[u8], rows: usize, columns: usize) -> Result<(), String> {
    match scan_headers(jpeg).and_then(|h| h.size) {
        Some((r, c)) if (r, c) != (rows, columns) => Err(format!(
            "the JPEG stream is {c} x {r} pixels, the DICOM attributes say {columns} x {rows}"
        )),
        _ => Ok(()),
    }
}

/// Decode `jpeg` as RGB without a colour transform when its headers leave the colour space
/// unstated; `None` when they state it (the ordinary codec path then applies).
pub fn decode_unstated_rgb(jpeg: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let headers = scan_headers(jpeg)?;
    if headers.colour_stated {
        return None;
    }
    let mut stream = Vec::with_capacity(jpeg.len());
    let mut from = 0;
    for r in &headers.short_app14 {
        stream.extend_from_slice(&jpeg[from..r.start]);
        from = r.end;
    }
    stream.extend_from_slice(&jpeg[from..]);
    // Unstated three-component streams are read as Y'CbCr; asking for Y'CbCr out keeps the
    // samples as stored.
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
    let mut decoder = JpegDecoder::new_with_options(Cursor::new(&stream), options);
    let decoded = decoder
        .decode_headers()
        .and_then(|()| match decoder.input_colorspace() {
            Some(ColorSpace::YCbCr) => decoder.decode().map(Some),
            _ => Ok(None),
        });
    Some(match decoded {
        Ok(Some(samples)) => Ok(samples),
        Ok(None) => Err("JPEG stream is not three-component".into()),
        Err(e) => Err(format!("JPEG decoding failed: {e:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    fn stream(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut s = vec![0xFF, SOI];
        segments.iter().for_each(|g| s.extend_from_slice(g));
        s.extend(segment(SOS, &[0; 10]));
        s
    }

    fn sof(ids: [u8; 3]) -> Vec<u8> {
        let mut body = vec![8, 0, 2, 0, 2, 3];
        ids.iter().for_each(|&id| body.extend([id, 0x11, 0]));
        segment(0xC0, &body)
    }

    #[test]
    fn only_streams_without_any_colour_marker_are_unstated() {
        let unstated = stream(&[sof([0, 1, 2])]);
        assert!(!scan_headers(&unstated).unwrap().colour_stated);
        for (name, s) in [
            ("ids 1,2,3", stream(&[sof([1, 2, 3])])),
            ("ids RGB", stream(&[sof(*b"RGB")])),
            (
                "JFIF",
                stream(&[segment(APP0, b"JFIF\0\x01\x01"), sof([0, 1, 2])]),
            ),
            (
                "Adobe",
                stream(&[segment(APP14, b"Adobe\0\x64\0\0\0\0\0"), sof([0, 1, 2])]),
            ),
        ] {
            assert!(scan_headers(&s).unwrap().colour_stated, "{name}");
        }
        // An APP14 too short to hold the transform flag says nothing, and is cut out.
        let app14 = segment(APP14, b"Adobe\0\0\0\0\0");
        let short_adobe = stream(&[app14.clone(), sof([0, 1, 2])]);
        let headers = scan_headers(&short_adobe).unwrap();
        assert!(!headers.colour_stated);
        assert_eq!(headers.short_app14, vec![2..2 + app14.len()]);
    }

    #[test]
    fn the_stated_frame_size_must_be_the_dicom_size() {
        let s = stream(&[sof([1, 2, 3])]);
        assert_eq!(scan_headers(&s).unwrap().size, Some((2, 2)));
        assert_eq!(check_size(&s, 2, 2), Ok(()));
        let err = check_size(&s, 2, 64000).unwrap_err();
        assert!(
            err.contains("is 2 x 2 pixels, the DICOM attributes say 64000 x 2"),
            "{err}"
        );
        assert_eq!(check_size(b"not a jpeg", 2, 2), Ok(()));
    }

    #[test]
    fn truncated_or_foreign_streams_are_left_to_the_codec() {
        let whole = stream(&[sof([0, 1, 2])]);
        for cut in 0..whole.len() - 12 {
            assert_eq!(scan_headers(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(scan_headers(b"not a jpeg"), None);
    }
}

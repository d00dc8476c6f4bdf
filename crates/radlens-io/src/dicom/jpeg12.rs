//! 12-bit DCT JPEG (JPEG Extended, process 2 & 4), which lossy radiograph archives use and
//! which neither dicom-rs' codec (jpeg-decoder) nor zune-jpeg decodes. libjpeg-turbo 3
//! does (`tj3Decompress12`); turbojpeg-sys builds it from source with CMake.
//!
//! The stream's own header is checked against the DICOM image attributes before any
//! sample buffer is allocated, so a corrupt or hostile stream cannot size it.

use std::ffi::CStr;
use turbojpeg_sys as tj;

/// Largest number of scans decoded: a sequential 12-bit stream has one per component; a
/// hostile progressive one could hold thousands, each a pass over the image.
const SCAN_LIMIT: i32 = 64;

/// A TurboJPEG decompressor, destroyed on drop.
struct Decompressor(tj::tjhandle);

impl Decompressor {
    fn new() -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked below.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err("libjpeg-turbo could not start a decompressor".into());
        }
        Ok(Self(handle))
    }

    fn error(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is live and `param` is one of TurboJPEG's parameter ids.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), String> {
        // SAFETY: as in `get`.
        match unsafe { tj::tj3Set(self.0, param as i32, value) } {
            0 => Ok(()),
            _ => Err(self.error()),
        }
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Decode one 12-bit JPEG frame of `width` x `height` with `channels` samples per pixel
/// (1 greyscale, 3 colour, returned as RGB) to little-endian 16-bit samples, the layout
/// the other codecs return.
pub fn decode(
    jpeg: &[u8],
    width: usize,
    height: usize,
    channels: usize,
) -> Result<Vec<u8>, String> {
    let d = Decompressor::new()?;
    let len = jpeg.len() as tj::size_t;
    // SAFETY: `jpeg` is a live slice of `len` bytes; TurboJPEG only reads it.
    if unsafe { tj::tj3DecompressHeader(d.0, jpeg.as_ptr(), len) } != 0 {
        return Err(format!("12-bit JPEG header: {}", d.error()));
    }
    let (w, h) = (
        d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if usize::try_from(w) != Ok(width) || usize::try_from(h) != Ok(height) {
        return Err(format!(
            "the JPEG stream is {w} x {h} pixels, the DICOM attributes say {width} x {height}"
        ));
    }
    let precision = d.get(tj::TJPARAM_TJPARAM_PRECISION);
    if d.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1 || !(9..=12).contains(&precision) {
        return Err(format!(
            "the JPEG stream is not 12-bit DCT JPEG ({precision}-bit{})",
            if d.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1 {
                " lossless"
            } else {
                ""
            }
        ));
    }
    let format = match channels {
        1 => tj::TJPF_TJPF_GRAY,
        3 => tj::TJPF_TJPF_RGB,
        n => return Err(format!("{n} samples per pixel in a 12-bit JPEG")),
    };
    d.set(tj::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
    d.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    let mut samples = vec![0i16; width * height * channels];
    // SAFETY: `samples` holds width * height * channels values, what TurboJPEG writes for
    // a stream of the width and height checked above at pitch 0 (rows packed) in
    // `format`, whose pixel size is `channels`.
    let status =
        unsafe { tj::tj3Decompress12(d.0, jpeg.as_ptr(), len, samples.as_mut_ptr(), 0, format) };
    if status != 0 {
        return Err(format!("12-bit JPEG decoding failed: {}", d.error()));
    }
    Ok(samples.iter().flat_map(|s| s.to_le_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn garbage_and_8_bit_streams_are_errors() {
        let err = decode(b"not a jpeg at all", 4, 4, 1).unwrap_err();
        assert!(err.contains("12-bit JPEG header"), "{err}");
        // An 8-bit baseline stream: all-ones quantisation, one-code Huffman tables
        // (DC difference 0, EOB), 8 x 8 greyscale.
        let seg = |m: u8, p: &[u8]| {
            let mut s = vec![0xFF, m];
            s.extend(((p.len() + 2) as u16).to_be_bytes());
            s.extend(p);
            s
        };
        // One code of length 1 (16 counts by length), for symbol 0.
        let mut counts = [0u8; 16];
        counts[0] = 1;
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(seg(0xDB, &[[0u8].as_slice(), &[1; 64]].concat()));
        jpeg.extend(seg(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
        jpeg.extend(seg(0xC4, &[[0x00].as_slice(), &counts, &[0]].concat()));
        jpeg.extend(seg(0xC4, &[[0x10].as_slice(), &counts, &[0]].concat()));
        jpeg.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
        jpeg.extend([0x3F, 0xFF, 0xD9]);
        let err = decode(&jpeg, 8, 8, 1).unwrap_err();
        assert!(err.contains("not 12-bit DCT JPEG (8-bit"), "{err}");
        let err = decode(&jpeg, 16, 8, 1).unwrap_err();
        assert!(
            err.contains("8 x 8 pixels, the DICOM attributes say 16 x 8"),
            "{err}"
        );
    }
}

//! DICOM RLE Lossless (PS3.5 Annex G) for 32-bit samples, which dicom-rs' RLE decoder
//! refuses (it reads 8 and 16 bits): a 64-byte header of segment offsets, then one PackBits
//! segment per byte plane of each sample, most significant byte first.

use super::attrs::PixelLayout;

/// The most segments an RLE header lists: 15 offsets fill its 64 bytes (PS3.5 G.5).
const MAX_SEGMENTS: u32 = 15;

/// Check each fragment's header before dicom-rs' RLE decoder reads it: that decoder
/// allocates the declared segment count before checking it (4 billion, from a mutated file
/// the `dicom` fuzz target found) and indexes past a short fragment.
pub fn check_headers(fragments: &[Vec<u8>]) -> Result<(), String> {
    for (i, fragment) in fragments.iter().enumerate() {
        let declared = fragment
            .get(..4)
            .filter(|_| fragment.len() >= 64)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("RLE fragment {i} is shorter than its 64-byte header"))?;
        if declared > MAX_SEGMENTS {
            return Err(format!(
                "RLE fragment {i} declares {declared} segments; its header holds at most {MAX_SEGMENTS}"
            ));
        }
    }
    Ok(())
}

/// Decode one frame's fragment into little-endian interleaved samples.
pub fn decode_frame(fragment: &[u8], layout: &PixelLayout) -> Result<Vec<u8>, String> {
    let pixels = layout.rows * layout.columns;
    let width = usize::from(layout.bits_allocated / 8);
    let segments = layout.samples_per_pixel * width;
    let word = |i: usize| -> Option<usize> {
        let b = fragment.get(4 * i..4 * i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let declared = word(0).ok_or("RLE fragment shorter than its 64-byte header")?;
    if declared != segments || fragment.len() < 64 {
        return Err(format!(
            "RLE header declares {declared} segments, the image attributes need {segments}"
        ));
    }
    let mut out = vec![0u8; pixels * segments];
    let mut plane = Vec::with_capacity(pixels);
    for seg in 0..segments {
        let start = word(1 + seg).unwrap_or(0);
        let end = if seg + 1 < segments {
            word(2 + seg).unwrap_or(0)
        } else {
            fragment.len()
        };
        let data = fragment
            .get(start..end)
            .filter(|_| start >= 64)
            .ok_or_else(|| format!("RLE segment {seg} lies outside its fragment"))?;
        packbits(data, pixels, &mut plane);
        if plane.len() < pixels {
            return Err(format!(
                "RLE segment {seg} decodes to {} bytes, {pixels} expected",
                plane.len()
            ));
        }
        let (sample, byte) = (seg / width, width - 1 - seg % width);
        for (i, &b) in plane.iter().enumerate() {
            out[(i * layout.samples_per_pixel + sample) * width + byte] = b;
        }
    }
    Ok(out)
}

/// PackBits: a header n >= 0 copies n + 1 literal bytes, -127..=-1 repeats the next byte
/// 1 - n times, -128 is a no-op. Stops at `limit` bytes.
fn packbits(data: &[u8], limit: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < data.len() && out.len() < limit {
        let n = data[i] as i8;
        i += 1;
        if n >= 0 {
            let run = &data[i..(i + n as usize + 1).min(data.len())];
            out.extend_from_slice(&run[..run.len().min(limit - out.len())]);
            i += n as usize + 1;
        } else if n != -128 {
            if let Some(&b) = data.get(i) {
                let count = (1 - i32::from(n)) as usize;
                out.extend(std::iter::repeat_n(b, count.min(limit - out.len())));
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::Photometric;

    #[test]
    fn packbits_literals_runs_and_noops() {
        let mut out = Vec::new();
        // 2 literals (n=1), a run of 3 (n=-2), a no-op (-128), 1 literal (n=0)
        packbits(&[1, 7, 8, 0xFE, 9, 0x80, 0, 5], 100, &mut out);
        assert_eq!(out, vec![7, 8, 9, 9, 9, 5]);
        packbits(&[0xFE, 9], 2, &mut out);
        assert_eq!(out, vec![9, 9]);
    }

    #[test]
    fn thirty_two_bit_planes_most_significant_first() {
        let layout = PixelLayout {
            rows: 1,
            columns: 2,
            samples_per_pixel: 1,
            bits_allocated: 32,
            bits_stored: 32,
            signed: false,
            planar: false,
            photometric: Photometric::Monochrome2,
            frames: 1,
        };
        // values 0x01020304 and 0x0A0B0C0D: planes [01 0A] [02 0B] [03 0C] [04 0D]
        let mut f = vec![0u8; 64];
        f[0] = 4;
        for seg in 0..4 {
            let off = (64 + 3 * seg) as u32;
            f[4 + 4 * seg..8 + 4 * seg].copy_from_slice(&off.to_le_bytes());
        }
        for plane in [[1u8, 10], [2, 11], [3, 12], [4, 13]] {
            f.extend_from_slice(&[1, plane[0], plane[1]]);
        }
        let out = decode_frame(&f, &layout).unwrap();
        assert_eq!(
            out,
            [0x01020304u32.to_le_bytes(), 0x0A0B0C0Du32.to_le_bytes()].concat()
        );
        let e = decode_frame(&f[..70], &layout).unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }
}

//! Sample grids: generated images beside their generated masks, so that a person can see
//! whether the label branch draws the lungs and heart where the image has them.

use super::generator::Generated;
use crate::error::Result;
use crate::render::class_colour;
use candle_core::DType;
use radlens_io::raster::write_rgb_png;
use std::path::Path;

/// Pairs per grid row.
const PAIRS_PER_ROW: usize = 4;

/// An RGB grid (width, height, pixels): per sample the image in grey, then its mask (argmax
/// of the class logits) in the class colours over the darkened image.
pub fn sample_grid(g: &Generated) -> Result<(usize, usize, Vec<u8>)> {
    let (n, _, s, _) = g.image.dims4()?;
    let img: Vec<f32> = g.image.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let mask: Vec<u32> = g.seg_logits.argmax(1)?.flatten_all()?.to_vec1()?;
    let cols = PAIRS_PER_ROW.min(n);
    let rows = n.div_ceil(cols);
    let (w, h) = (2 * s * cols, s * rows);
    let mut rgb = vec![0u8; w * h * 3];
    for k in 0..n {
        let (r, c) = (k / cols, k % cols);
        for y in 0..s {
            for x in 0..s {
                let p = k * s * s + y * s + x;
                let grey = ((img[p] + 1.0) * 127.5).clamp(0.0, 255.0);
                let label = mask[p] as u8;
                let tint = if label == 0 {
                    [grey as u8; 3]
                } else {
                    class_colour(label).map(|v| (0.4 * grey + 0.6 * v as f32) as u8)
                };
                let row = r * s + y;
                for (half, px) in [[grey as u8; 3], tint].into_iter().enumerate() {
                    let col = (2 * c + half) * s + x;
                    rgb[(row * w + col) * 3..][..3].copy_from_slice(&px);
                }
            }
        }
    }
    Ok((w, h, rgb))
}

/// Writes [`sample_grid`] as a PNG (atomically).
pub fn write_sample_grid(path: &Path, g: &Generated) -> Result<()> {
    let (w, h, rgb) = sample_grid(g)?;
    write_rgb_png(path, w, h, &rgb)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn grid_puts_image_left_and_mask_right() {
        // one 2x2 sample: image -1, 0, 1, 1; class 2 at pixel 3 only
        let image = Tensor::new(&[-1.0f32, 0.0, 1.0, 1.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 2))
            .unwrap();
        let mut logits = vec![0f32; 3 * 4];
        logits[0..3].fill(1.0); // class 0 wins pixels 0..3
        logits[2 * 4 + 3] = 5.0; // class 2 wins pixel 3
        let seg_logits = Tensor::from_vec(logits, (1, 3, 2, 2), &Device::Cpu).unwrap();
        let (w, h, rgb) = sample_grid(&Generated { image, seg_logits }).unwrap();
        assert_eq!((w, h), (4, 2));
        let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..][..3];
        assert_eq!(px(0, 0), [0, 0, 0]);
        assert_eq!(px(1, 1), [255, 255, 255]);
        assert_eq!(px(2, 0), [0, 0, 0]); // mask half, background: the grey image
        let c = class_colour(2);
        assert_eq!(px(3, 1), c.map(|v| (0.4 * 255.0 + 0.6 * v as f32) as u8));
    }
}

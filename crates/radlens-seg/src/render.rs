//! Pictures a person can read: mask overlays with outlines, heat maps.

use radlens_io::{LabelMap, XrayImage};

/// Display colour of a class id (background has none).
pub fn class_colour(class: u8) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 6] = [
        [230, 57, 70],   // right lung: red
        [42, 157, 143],  // left lung: green
        [69, 123, 230],  // heart: blue
        [244, 196, 48],  // right clavicle: yellow
        [199, 125, 255], // left clavicle: violet
        [255, 140, 66],  // further classes: orange
    ];
    PALETTE[(class.max(1) as usize - 1).min(PALETTE.len() - 1)]
}

/// The radiograph in grey with each class tinted (alpha 0.35) and outlined.
pub fn overlay(img: &XrayImage, labels: &LabelMap) -> Vec<u8> {
    let (w, h) = (img.width, img.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    let thick = (w.max(h) / 400).max(1);
    for y in 0..h {
        for x in 0..w {
            let g = img.get(x, y).clamp(0.0, 1.0) * 255.0;
            let l = labels.labels[y * w + x];
            if l == 0 {
                rgb.extend([g as u8; 3]);
                continue;
            }
            let on_edge = (x.saturating_sub(thick)..=(x + thick).min(w - 1)).any(|xx| {
                (y.saturating_sub(thick)..=(y + thick).min(h - 1))
                    .any(|yy| labels.labels[yy * w + xx] != l)
            });
            let c = class_colour(l);
            let a = if on_edge { 1.0 } else { 0.35 };
            rgb.extend(c.map(|v| (g * (1.0 - a) + v as f32 * a) as u8));
        }
    }
    rgb
}

/// A [0, 1] map as an RGB heat map (black, purple, orange, yellow).
pub fn heat_map(values: &[f32]) -> Vec<u8> {
    const STOPS: [(f32, [f32; 3]); 4] = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.4, [120.0, 28.0, 109.0]),
        (0.75, [237.0, 105.0, 37.0]),
        (1.0, [252.0, 255.0, 164.0]),
    ];
    let mut out = Vec::with_capacity(values.len() * 3);
    for &v in values {
        let v = if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let k = STOPS
            .windows(2)
            .position(|s| v <= s[1].0)
            .unwrap_or(STOPS.len() - 2);
        let ((a, ca), (b, cb)) = (STOPS[k], STOPS[k + 1]);
        let t = (v - a) / (b - a);
        out.extend((0..3).map(|i| (ca[i] + (cb[i] - ca[i]) * t).round() as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_map_ends_and_overlay_outline() {
        assert_eq!(
            heat_map(&[0.0, 1.0, f32::NAN]),
            vec![0, 0, 4, 252, 255, 164, 0, 0, 4]
        );
        let img = XrayImage::new(3, 3, vec![0.0; 9]).unwrap();
        let mut lab = LabelMap::empty(3, 3);
        lab.labels[4] = 1;
        let o = overlay(&img, &lab);
        assert_eq!(&o[12..15], &class_colour(1)); // centre pixel is on the outline
        assert_eq!(&o[0..3], &[0, 0, 0]);
    }
}

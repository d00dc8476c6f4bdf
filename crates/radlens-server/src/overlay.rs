//! What the viewer draws over the image, rendered once per analysis: the structures as
//! filled, outlined colour; the SSN uncertainty (per-pixel entropy of the sample labels);
//! single SSN samples as outlines; and the CTR's two widths as line segments. Label maps
//! are stored losslessly as 8-bit grey PNGs.

use crate::error::{Result, ServerError};
use image::{ImageBuffer, ImageFormat, Luma, Rgba};
use radlens_io::LabelMap;
use radlens_report::measure::geometry::{extents, AnatomyIds};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

fn encode<P: image::Pixel<Subpixel = u8> + image::PixelWithColorType>(
    img: ImageBuffer<P, Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

pub fn label_png(map: &LabelMap) -> Result<Vec<u8>> {
    let img = ImageBuffer::<Luma<u8>, _>::from_raw(
        map.width as u32,
        map.height as u32,
        map.labels.clone(),
    )
    .ok_or_else(|| ServerError::Internal("label map of the wrong length".into()))?;
    encode(img)
}

pub fn label_from_png(png: &[u8]) -> Result<LabelMap> {
    let img = image::load_from_memory_with_format(png, ImageFormat::Png)
        .map_err(|e| ServerError::Internal(format!("stored label map: {e}")))?
        .into_luma8();
    Ok(LabelMap {
        width: img.width() as usize,
        height: img.height() as usize,
        labels: img.into_raw(),
    })
}

/// Display colour of a class, by its name in the model's schema.
pub fn colour_of(name: &str) -> [u8; 3] {
    match name {
        "right_lung" => [64, 156, 255],
        "left_lung" => [64, 220, 120],
        "heart" => [255, 80, 80],
        "opacity" => [255, 200, 0],
        _ => [200, 200, 200],
    }
}

/// Colours of the sample outlines, one per drawn sample.
pub const SAMPLE_COLOURS: [[u8; 3]; 4] =
    [[255, 230, 0], [0, 230, 255], [255, 0, 230], [255, 140, 0]];

/// Whether pixel `i` of `map` is a non-background pixel with a 4-neighbour of another class.
fn is_edge(map: &LabelMap, x: usize, y: usize) -> bool {
    let (w, h) = (map.width, map.height);
    let c = map.labels[y * w + x];
    if c == 0 {
        return false;
    }
    let differs = |xx: usize, yy: usize| map.labels[yy * w + xx] != c;
    (x > 0 && differs(x - 1, y))
        || (x + 1 < w && differs(x + 1, y))
        || (y > 0 && differs(x, y - 1))
        || (y + 1 < h && differs(x, y + 1))
}

/// The edges of `map`, thickened to 3 pixels so that they survive the viewer's downscaling.
fn edges(map: &LabelMap) -> Vec<bool> {
    let (w, h) = (map.width, map.height);
    let thin: Vec<bool> = (0..w * h).map(|i| is_edge(map, i % w, i / w)).collect();
    let mut thick = thin.clone();
    for y in 0..h {
        for x in 0..w {
            if thin[y * w + x] {
                for (dx, dy) in [(0i64, -1i64), (0, 1), (-1, 0), (1, 0)] {
                    let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                    if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                        thick[yy as usize * w + xx as usize] = true;
                    }
                }
            }
        }
    }
    thick
}

/// Structures filled translucent with opaque outlines, coloured by class name.
pub fn structures(map: &LabelMap, classes: &[String]) -> Result<Vec<u8>> {
    let edge = edges(map);
    let img = ImageBuffer::from_fn(map.width as u32, map.height as u32, |x, y| {
        let i = y as usize * map.width + x as usize;
        let c = map.labels[i] as usize;
        if c == 0 {
            return Rgba([0, 0, 0, 0]);
        }
        let [r, g, b] = colour_of(classes.get(c).map_or("", String::as_str));
        Rgba([r, g, b, if edge[i] { 255 } else { 80 }])
    });
    encode(img)
}

/// One sample's class boundaries in one colour.
pub fn outline(map: &LabelMap, colour: [u8; 3]) -> Result<Vec<u8>> {
    let edge = edges(map);
    let [r, g, b] = colour;
    let img = ImageBuffer::from_fn(map.width as u32, map.height as u32, |x, y| {
        if edge[y as usize * map.width + x as usize] {
            Rgba([r, g, b, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    encode(img)
}

/// Per-pixel entropy of the samples' labels, divided by ln(`classes`) so that 1 means
/// the samples spread evenly over every class; 0 where they all agree.
pub fn entropy(samples: &[LabelMap], classes: usize) -> Vec<f32> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let n = samples.len() as f64;
    let norm = (classes.max(2) as f64).ln();
    let mut counts = vec![0u32; classes.max(1)];
    (0..first.labels.len())
        .map(|i| {
            counts.iter_mut().for_each(|c| *c = 0);
            for s in samples {
                if let Some(c) = counts.get_mut(s.labels[i] as usize) {
                    *c += 1;
                }
            }
            let h: f64 = counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / n;
                    -p * p.ln()
                })
                .sum();
            (h / norm) as f32
        })
        .collect()
}

/// The entropy map as a heat overlay: transparent where the samples agree, yellow to red
/// and more opaque as they disagree.
pub fn uncertainty(samples: &[LabelMap], classes: usize) -> Result<Vec<u8>> {
    let first = samples
        .first()
        .ok_or_else(|| ServerError::Internal("no SSN samples to draw".into()))?;
    let h = entropy(samples, classes);
    let img = ImageBuffer::from_fn(first.width as u32, first.height as u32, |x, y| {
        let v = h[y as usize * first.width + x as usize].clamp(0.0, 1.0);
        let a = (255.0 * (2.0 * v).min(1.0)) as u8;
        Rgba([255, (230.0 * (1.0 - v)) as u8, 0, a])
    });
    encode(img)
}

/// A horizontal segment in image pixels: from the left edge of column `x0` to the right
/// edge of column `x1`, at row `y`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub x0: f64,
    pub x1: f64,
    pub y: f64,
}

impl Segment {
    pub fn length(&self) -> f64 {
        self.x1 - self.x0
    }
}

/// The two widths the CTR divides, as measured on the mean mask: the heart's horizontal
/// extent (drawn through the heart's centroid) and both lungs' (drawn at the heart's
/// lowest row, near where the thoracic diameter is read on a film).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CtrLines {
    pub heart: Segment,
    pub thorax: Segment,
}

pub fn ctr_lines(map: &LabelMap, ids: AnatomyIds) -> Option<CtrLines> {
    let heart_id = ids.heart?;
    let classes = [ids.right_lung, ids.left_lung, heart_id]
        .into_iter()
        .max()
        .map_or(0, |m| m as usize + 1);
    let ext = extents(map, classes);
    let heart = ext[heart_id as usize]?;
    let (r, l) = (ext[ids.right_lung as usize]?, ext[ids.left_lung as usize]?);
    Some(CtrLines {
        heart: Segment {
            x0: heart.bbox.x_min as f64,
            x1: heart.bbox.x_max as f64 + 1.0,
            y: heart.centroid.1 + 0.5,
        },
        thorax: Segment {
            x0: r.bbox.x_min.min(l.bbox.x_min) as f64,
            x1: r.bbox.x_max.max(l.bbox.x_max) as f64 + 1.0,
            y: heart.bbox.y_max as f64 + 0.5,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(w: usize, labels: &[u8]) -> LabelMap {
        LabelMap {
            width: w,
            height: labels.len() / w,
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn entropy_by_hand() {
        // pixel 0: all agree; pixel 1: half 0, half 1 over 4 classes -> ln 2 / ln 4 = 0.5
        let a = map(2, &[1, 0]);
        let b = map(2, &[1, 1]);
        let h = entropy(&[a, b], 4);
        assert_eq!(h[0], 0.0);
        assert!((h[1] - 0.5).abs() < 1e-6, "{}", h[1]);
    }

    #[test]
    fn label_maps_round_trip_through_png() {
        let m = map(3, &[0, 1, 2, 3, 255, 7]);
        assert_eq!(label_from_png(&label_png(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn ctr_lines_span_the_extents_the_ctr_divides() {
        // right lung x 1..=2, left lung x 6..=8, heart x 3..=5 on row 2 (ids 1, 2, 3)
        #[rustfmt::skip]
        let m = map(10, &[
            0, 1, 1, 0, 0, 0, 2, 2, 2, 0,
            0, 1, 1, 0, 0, 0, 2, 2, 2, 0,
            0, 1, 1, 3, 3, 3, 2, 2, 0, 0,
        ]);
        let ids = AnatomyIds {
            right_lung: 1,
            left_lung: 2,
            heart: Some(3),
            opacity: None,
        };
        let l = ctr_lines(&m, ids).unwrap();
        assert_eq!((l.heart.x0, l.heart.x1, l.heart.y), (3.0, 6.0, 2.5));
        assert_eq!((l.thorax.x0, l.thorax.x1), (1.0, 9.0));
        let measured = radlens_report::measure::geometry::MaskMeasures::of(&m, ids)
            .ctr()
            .unwrap();
        assert!((l.heart.length() / l.thorax.length() - measured).abs() < 1e-12);
        assert!(ctr_lines(&map(2, &[1, 2]), ids).is_none());
    }

    #[test]
    fn outlines_mark_class_boundaries_only() {
        // a 7x7 block of class 1 in a 9x9 background: its interior centre is no edge
        let mut labels = vec![0u8; 81];
        for y in 1..8 {
            for x in 1..8 {
                labels[y * 9 + x] = 1;
            }
        }
        let m = map(9, &labels);
        let e = edges(&m);
        assert!(e[9 + 1] && e[4 * 9 + 1] && e[4 * 9]);
        assert!(!e[4 * 9 + 4], "the centre is not on a boundary");
    }
}

//! Geometry of the classes of a label map: pixel counts, bounding boxes and centroids,
//! and the measurements built from them (cardiothoracic ratio, lung areas, opacity
//! extent per lung).

use radlens_io::{ClassId, LabelMap};
use serde::{Deserialize, Serialize};

/// A box in image pixels, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x_min: usize,
    pub y_min: usize,
    pub x_max: usize,
    pub y_max: usize,
}

impl PixelBox {
    pub fn width(&self) -> usize {
        self.x_max - self.x_min + 1
    }
    pub fn height(&self) -> usize {
        self.y_max - self.y_min + 1
    }
}

/// Where one class lies in a label map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    pub pixels: usize,
    pub bbox: PixelBox,
    pub centroid: (f64, f64),
}

/// The extent of every class id below `classes` (`None` when absent).
pub fn extents(map: &LabelMap, classes: usize) -> Vec<Option<Extent>> {
    let mut acc: Vec<Option<(usize, PixelBox, f64, f64)>> = vec![None; classes];
    for y in 0..map.height {
        for x in 0..map.width {
            let c = map.labels[y * map.width + x] as usize;
            if c >= classes {
                continue;
            }
            let e = acc[c].get_or_insert((
                0,
                PixelBox {
                    x_min: x,
                    y_min: y,
                    x_max: x,
                    y_max: y,
                },
                0.0,
                0.0,
            ));
            e.0 += 1;
            e.1.x_min = e.1.x_min.min(x);
            e.1.x_max = e.1.x_max.max(x);
            e.1.y_min = e.1.y_min.min(y);
            e.1.y_max = e.1.y_max.max(y);
            e.2 += x as f64;
            e.3 += y as f64;
        }
    }
    acc.into_iter()
        .map(|a| {
            a.map(|(n, bbox, sx, sy)| Extent {
                pixels: n,
                bbox,
                centroid: (sx / n as f64, sy / n as f64),
            })
        })
        .collect()
}

/// Class ids of the anatomy a measurement needs, by name in the model's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnatomyIds {
    pub right_lung: ClassId,
    pub left_lung: ClassId,
    pub heart: Option<ClassId>,
    pub opacity: Option<ClassId>,
}

/// The raw measurements of one mask, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskMeasures {
    /// Horizontal extent of the heart.
    pub heart_width: Option<usize>,
    /// Horizontal extent of both lungs together (widest internal thoracic diameter).
    pub thoracic_width: Option<usize>,
    pub right_lung_pixels: usize,
    pub left_lung_pixels: usize,
    /// Opacity pixels on the patient's right and left (split at the midline between the
    /// lung centroids) as a fraction of that lung (lung + opacity pixels).
    pub opacity_right: Option<f64>,
    pub opacity_left: Option<f64>,
}

impl MaskMeasures {
    /// Cardiothoracic ratio: heart width / thoracic width.
    pub fn ctr(&self) -> Option<f64> {
        match (self.heart_width, self.thoracic_width) {
            (Some(h), Some(t)) if t > 0 => Some(h as f64 / t as f64),
            _ => None,
        }
    }

    /// Left lung area / right lung area.
    pub fn lung_ratio(&self) -> Option<f64> {
        (self.right_lung_pixels > 0)
            .then(|| self.left_lung_pixels as f64 / self.right_lung_pixels as f64)
    }

    /// Measure `map` (the patient's right lung lies on the image's left).
    pub fn of(map: &LabelMap, ids: AnatomyIds) -> Self {
        let classes = [
            Some(ids.right_lung),
            Some(ids.left_lung),
            ids.heart,
            ids.opacity,
        ]
        .into_iter()
        .flatten()
        .max()
        .map_or(0, |m| m as usize + 1);
        let ext = extents(map, classes);
        let get = |c: Option<ClassId>| c.and_then(|c| ext[c as usize]);
        let (right, left) = (get(Some(ids.right_lung)), get(Some(ids.left_lung)));
        let thoracic_width = match (right, left) {
            (Some(r), Some(l)) => {
                Some(r.bbox.x_max.max(l.bbox.x_max) - r.bbox.x_min.min(l.bbox.x_min) + 1)
            }
            _ => None,
        };
        let (mut opacity_right, mut opacity_left) = (None, None);
        if let (Some(op), Some(r), Some(l)) = (ids.opacity, right, left) {
            let midline = (r.centroid.0 + l.centroid.0) / 2.0;
            let (mut on_right, mut on_left) = (0usize, 0usize);
            for y in 0..map.height {
                for x in 0..map.width {
                    if map.labels[y * map.width + x] == op {
                        if (x as f64) < midline {
                            on_right += 1;
                        } else {
                            on_left += 1;
                        }
                    }
                }
            }
            opacity_right = Some(on_right as f64 / (on_right + r.pixels) as f64);
            opacity_left = Some(on_left as f64 / (on_left + l.pixels) as f64);
        }
        Self {
            heart_width: get(ids.heart).map(|h| h.bbox.width()),
            thoracic_width,
            right_lung_pixels: right.map_or(0, |e| e.pixels),
            left_lung_pixels: left.map_or(0, |e| e.pixels),
            opacity_right,
            opacity_left,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 20 x 10 map: right lung x 2..=6, left lung x 12..=17 (rows 1..=8), heart x 6..=12
    /// (rows 5..=8, painted over), opacity x 3..=4 rows 1..=2 (patient's right).
    pub(crate) fn synthetic() -> LabelMap {
        let mut m = LabelMap::empty(20, 10);
        let mut paint = |x0: usize, x1: usize, y0: usize, y1: usize, c: u8| {
            for y in y0..=y1 {
                for x in x0..=x1 {
                    m.labels[y * 20 + x] = c;
                }
            }
        };
        paint(2, 6, 1, 8, 1);
        paint(12, 17, 1, 8, 2);
        paint(6, 12, 5, 8, 3);
        paint(3, 4, 1, 2, 4);
        m
    }

    const IDS: AnatomyIds = AnatomyIds {
        right_lung: 1,
        left_lung: 2,
        heart: Some(3),
        opacity: Some(4),
    };

    #[test]
    fn ctr_areas_and_opacity_by_hand() {
        let m = MaskMeasures::of(&synthetic(), IDS);
        // heart 6..=12 is 7 wide; lungs 2..=17 are 16 wide
        assert_eq!((m.heart_width, m.thoracic_width), (Some(7), Some(16)));
        assert!((m.ctr().unwrap() - 7.0 / 16.0).abs() < 1e-12);
        // right lung: 5x8 = 40 minus heart column x=6 rows 5..=8 (4) minus opacity 4 = 32
        assert_eq!(m.right_lung_pixels, 32);
        // left lung: 6x8 = 48 minus heart column x=12 rows 5..=8 (4) = 44
        assert_eq!(m.left_lung_pixels, 44);
        assert!((m.lung_ratio().unwrap() - 44.0 / 32.0).abs() < 1e-12);
        assert!((m.opacity_right.unwrap() - 4.0 / 36.0).abs() < 1e-12);
        assert_eq!(m.opacity_left, Some(0.0));
    }

    #[test]
    fn missing_classes_give_no_ratio() {
        let m = MaskMeasures::of(&LabelMap::empty(5, 5), IDS);
        assert_eq!(
            (m.ctr(), m.lung_ratio(), m.opacity_right),
            (None, None, None)
        );
    }
}

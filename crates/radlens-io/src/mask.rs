//! Label maps: one class id per pixel.

use crate::classes::ClassId;
use crate::error::{IoError, Result};
use std::path::Path;

/// A per-pixel class map, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<ClassId>,
}

impl LabelMap {
    /// An all-background map.
    pub fn empty(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            labels: vec![0; width * height],
        }
    }

    /// Set `class` wherever `mask` is true (later paints win over earlier ones).
    pub fn paint(&mut self, mask: &[bool], class: ClassId) {
        for (l, &m) in self.labels.iter_mut().zip(mask) {
            if m {
                *l = class;
            }
        }
    }

    /// Pixels of one class as a boolean mask.
    pub fn class_mask(&self, class: ClassId) -> Vec<bool> {
        self.labels.iter().map(|&l| l == class).collect()
    }

    /// Keep only the largest 8-connected component of each foreground class;
    /// the pixels of smaller components become background.
    pub fn keep_largest_components(&mut self) {
        let (w, h) = (self.width, self.height);
        let mut component = vec![usize::MAX; self.labels.len()];
        // per class: (size, id) of the largest component so far
        let mut best: std::collections::HashMap<ClassId, (usize, usize)> = Default::default();
        let mut sizes = Vec::new();
        let mut stack = Vec::new();
        for start in 0..self.labels.len() {
            let class = self.labels[start];
            if class == 0 || component[start] != usize::MAX {
                continue;
            }
            let id = sizes.len();
            let mut size = 0;
            component[start] = id;
            stack.push(start);
            while let Some(i) = stack.pop() {
                size += 1;
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                for (dx, dy) in [
                    (-1, -1),
                    (0, -1),
                    (1, -1),
                    (-1, 0),
                    (1, 0),
                    (-1, 1),
                    (0, 1),
                    (1, 1),
                ] {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if self.labels[j] == class && component[j] == usize::MAX {
                        component[j] = id;
                        stack.push(j);
                    }
                }
            }
            sizes.push(size);
            let entry = best.entry(class).or_insert((0, id));
            if size > entry.0 {
                *entry = (size, id);
            }
        }
        for (l, &c) in self.labels.iter_mut().zip(&component) {
            if *l != 0 && best[l].1 != c {
                *l = 0;
            }
        }
    }

    /// Fill holes: every background region that does not reach the image
    /// border takes the most common class among the pixels around it.
    pub fn fill_holes(&mut self) {
        let (w, h) = (self.width, self.height);
        let mut seen = vec![false; self.labels.len()];
        let mut region = Vec::new();
        let mut stack = Vec::new();
        for start in 0..self.labels.len() {
            if self.labels[start] != 0 || seen[start] {
                continue;
            }
            region.clear();
            let mut touches_border = false;
            let mut around = [0usize; 256];
            seen[start] = true;
            stack.push(start);
            while let Some(i) = stack.pop() {
                region.push(i);
                let (x, y) = (i % w, i / w);
                touches_border |= x == 0 || y == 0 || x + 1 == w || y + 1 == h;
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < w).then(|| i + 1),
                    (y > 0).then(|| i - w),
                    (y + 1 < h).then(|| i + w),
                ];
                for j in neighbours.into_iter().flatten() {
                    if self.labels[j] != 0 {
                        around[self.labels[j] as usize] += 1;
                    } else if !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            if touches_border {
                continue;
            }
            let fill = (1..256)
                .max_by_key(|&c| (around[c], std::cmp::Reverse(c)))
                .unwrap_or(0) as ClassId;
            for &i in &region {
                self.labels[i] = fill;
            }
        }
    }

    /// Nearest-neighbour resample to `width` x `height`.
    pub fn resize_nearest(&self, width: usize, height: usize) -> Self {
        let mut labels = Vec::with_capacity(width * height);
        for y in 0..height {
            let sy = ((y as f64 + 0.5) * self.height as f64 / height as f64) as usize;
            let row = sy.min(self.height - 1) * self.width;
            for x in 0..width {
                let sx = ((x as f64 + 0.5) * self.width as f64 / width as f64) as usize;
                labels.push(self.labels[row + sx.min(self.width - 1)]);
            }
        }
        Self {
            width,
            height,
            labels,
        }
    }
}

/// Read a binary mask PNG (any non-zero value in the first channel is foreground).
pub fn read_binary_mask(path: &Path) -> Result<(usize, usize, Vec<bool>)> {
    let img = crate::raster::decode(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mask = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(|v| v > 0).collect(),
        other => other
            .to_rgb8()
            .pixels()
            .map(|p| p.0.iter().any(|&c| c > 0))
            .collect(),
    };
    Ok((w, h, mask))
}

/// Read an integer label PNG (8 or 16 bit grey) as class ids.
pub fn read_label_png(path: &Path) -> Result<LabelMap> {
    let img = crate::raster::decode(path)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let raw: Vec<u16> = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(u16::from).collect(),
        image::DynamicImage::ImageLuma16(g) => g.into_raw(),
        _ => {
            return Err(IoError::invalid(
                path,
                "label map must be a single-channel 8 or 16 bit PNG",
            ))
        }
    };
    let labels = raw
        .into_iter()
        .map(|v| {
            ClassId::try_from(v)
                .map_err(|_| IoError::invalid(path, format!("label value {v} exceeds 255")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LabelMap {
        width,
        height,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_order_and_resize() {
        let mut m = LabelMap::empty(4, 2);
        m.paint(&[true, true, false, false, false, false, false, false], 1);
        m.paint(&[false, true, true, false, false, false, false, false], 2);
        assert_eq!(m.labels, vec![1, 2, 2, 0, 0, 0, 0, 0]);
        let r = m.resize_nearest(2, 2);
        assert_eq!(r.labels, vec![2, 0, 0, 0]);
        assert_eq!(m.class_mask(2).iter().filter(|&&b| b).count(), 2);
    }

    #[test]
    fn holes_take_the_surrounding_class() {
        #[rustfmt::skip]
        let labels = vec![
            0, 1, 1, 1, 0,
            0, 1, 0, 1, 0,
            0, 1, 1, 2, 2,
            0, 0, 2, 0, 2,
            0, 0, 2, 2, 2,
        ];
        let mut m = LabelMap {
            width: 5,
            height: 5,
            labels,
        };
        m.fill_holes();
        #[rustfmt::skip]
        let expect = vec![
            0, 1, 1, 1, 0,
            0, 1, 1, 1, 0,
            0, 1, 1, 2, 2,
            0, 0, 2, 2, 2,
            0, 0, 2, 2, 2,
        ];
        assert_eq!(m.labels, expect);
    }

    #[test]
    fn largest_components_by_hand() {
        // class 1: a 3-pixel blob (diagonal counts as connected) and a lone pixel;
        // class 2: two single pixels, the first found wins the tie
        #[rustfmt::skip]
        let labels = vec![
            1, 0, 0, 2,
            0, 1, 0, 0,
            1, 0, 0, 1,
            0, 0, 2, 0,
        ];
        let mut m = LabelMap {
            width: 4,
            height: 4,
            labels,
        };
        m.keep_largest_components();
        #[rustfmt::skip]
        let expect = vec![
            1, 0, 0, 2,
            0, 1, 0, 0,
            1, 0, 0, 0,
            0, 0, 0, 0,
        ];
        assert_eq!(m.labels, expect);
    }
}

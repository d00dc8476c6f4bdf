//! Anatomical regions derived geometrically from the masks (lungs, heart, apices,
//! costophrenic angles, hila, retrocardiac region, mediastinum), the opacity mask, and
//! boxes on MAIRA-2's 100-bin grid. Sides are the patient's: the right lung lies on the
//! image's left.

use crate::analysis::Analysis;
use crate::measure::geometry::{extents, Extent, PixelBox};
use radlens_io::{ClassId, LabelMap};
use serde::{Deserialize, Serialize};

/// A named region: its pixels on the image grid and its box.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub mask: Vec<bool>,
}

/// A box as fractions of the image and on MAIRA-2's 100-bin grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionBox {
    pub pixels: PixelBox,
    /// x_min, y_min, x_max, y_max in 0..100 (MAIRA-2's bins).
    pub bins: [u8; 4],
}

impl RegionBox {
    /// The box of `pixels` in an image of `width` x `height`.
    pub fn new(pixels: PixelBox, width: usize, height: usize) -> Self {
        let bin = |v: usize, n: usize| ((v * 100) / n.max(1)).min(99) as u8;
        Self {
            pixels,
            bins: [
                bin(pixels.x_min, width),
                bin(pixels.y_min, height),
                bin(pixels.x_max, width),
                bin(pixels.y_max, height),
            ],
        }
    }

    /// MAIRA-2's grounded box, `<box><xNN><yNN><xNN><yNN></box>`.
    pub fn grounded(&self) -> String {
        let [x0, y0, x1, y1] = self.bins;
        format!("<box><x{x0:02}><y{y0:02}><x{x1:02}><y{y1:02}></box>")
    }
}

impl Region {
    fn from_fn(name: &str, map: &LabelMap, keep: impl Fn(usize, usize, ClassId) -> bool) -> Self {
        let (w, h) = (map.width, map.height);
        let mask = (0..w * h)
            .map(|i| keep(i % w, i / w, map.labels[i]))
            .collect();
        Self {
            name: name.into(),
            width: w,
            height: h,
            mask,
        }
    }

    /// Pixels in the region.
    pub fn pixels(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }

    /// The region's bounding box, `None` when empty.
    pub fn bbox(&self) -> Option<RegionBox> {
        let mut b: Option<PixelBox> = None;
        for (i, _) in self.mask.iter().enumerate().filter(|(_, &m)| m) {
            let (x, y) = (i % self.width, i / self.width);
            let e = b.get_or_insert(PixelBox {
                x_min: x,
                y_min: y,
                x_max: x,
                y_max: y,
            });
            e.x_min = e.x_min.min(x);
            e.x_max = e.x_max.max(x);
            e.y_min = e.y_min.min(y);
            e.y_max = e.y_max.max(y);
        }
        b.map(|p| RegionBox::new(p, self.width, self.height))
    }

    /// The union of regions (same grid).
    pub fn union(name: &str, parts: &[Region]) -> Self {
        let first = &parts[0];
        Self {
            name: name.into(),
            width: first.width,
            height: first.height,
            mask: (0..first.mask.len())
                .map(|i| parts.iter().any(|p| p.mask[i]))
                .collect(),
        }
    }
}

/// Which side of the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
}

/// Fractions of a lung's box that define its subregions (radlens' geometric convention,
/// not an anatomical segmentation).
const APEX_FRACTION: f64 = 0.2;
const BASE_FRACTION: f64 = 0.2;
const COSTOPHRENIC_HEIGHT: f64 = 0.15;
const COSTOPHRENIC_WIDTH: f64 = 0.4;
const HILUM_RANGE: (f64, f64) = (0.35, 0.65);
const HILUM_WIDTH: f64 = 0.35;

/// Regions of one analysed image.
pub struct RegionMap<'a> {
    a: &'a Analysis,
    ext: Vec<Option<Extent>>,
}

impl<'a> RegionMap<'a> {
    pub fn new(a: &'a Analysis) -> Self {
        Self {
            ext: extents(&a.anatomy.mean, 8),
            a,
        }
    }

    fn map(&self) -> &LabelMap {
        &self.a.anatomy.mean
    }

    fn lung_id(&self, side: Side) -> ClassId {
        match side {
            Side::Right => self.a.anatomy_ids.right_lung,
            Side::Left => self.a.anatomy_ids.left_lung,
        }
    }

    /// One lung's mask.
    pub fn lung(&self, side: Side) -> Region {
        let id = self.lung_id(side);
        Region::from_fn(
            &format!("{} lung", side_name(side)),
            self.map(),
            |_, _, l| l == id,
        )
    }

    /// The heart's mask.
    pub fn heart(&self) -> Region {
        let id = self.a.anatomy_ids.heart;
        Region::from_fn("heart", self.map(), |_, _, l| Some(l) == id)
    }

    /// The part of a lung within fractions of its box: `rows` top-to-bottom, `cols`
    /// measured from its lateral edge (the image's outer side).
    fn lung_part(&self, side: Side, name: &str, rows: (f64, f64), cols: (f64, f64)) -> Region {
        let id = self.lung_id(side);
        let Some(e) = self.ext[id as usize] else {
            return Region::from_fn(name, self.map(), |_, _, _| false);
        };
        let b = e.bbox;
        let (h, w) = (b.height() as f64, b.width() as f64);
        Region::from_fn(name, self.map(), |x, y, l| {
            if l != id {
                return false;
            }
            let fy = (y - b.y_min) as f64 / h;
            // lateral distance: from x_min for the right lung (image left), from x_max for the left
            let fx = match side {
                Side::Right => (x - b.x_min) as f64 / w,
                Side::Left => (b.x_max - x) as f64 / w,
            };
            (rows.0..=rows.1).contains(&fy) && (cols.0..=cols.1).contains(&fx)
        })
    }

    pub fn apex(&self, side: Side) -> Region {
        self.lung_part(
            side,
            &format!("{} apex", side_name(side)),
            (0.0, APEX_FRACTION),
            (0.0, 1.0),
        )
    }

    pub fn base(&self, side: Side) -> Region {
        self.lung_part(
            side,
            &format!("{} lung base", side_name(side)),
            (1.0 - BASE_FRACTION, 1.0),
            (0.0, 1.0),
        )
    }

    pub fn costophrenic_angle(&self, side: Side) -> Region {
        self.lung_part(
            side,
            &format!("{} costophrenic angle", side_name(side)),
            (1.0 - COSTOPHRENIC_HEIGHT, 1.0),
            (0.0, COSTOPHRENIC_WIDTH),
        )
    }

    pub fn hilum(&self, side: Side) -> Region {
        self.lung_part(
            side,
            &format!("{} hilum", side_name(side)),
            HILUM_RANGE,
            (1.0 - HILUM_WIDTH, 1.0),
        )
    }

    /// The heart on the patient's left of the midline, below the heart's mid-height:
    /// where the left lower lobe hides behind it.
    pub fn retrocardiac(&self) -> Region {
        let heart = self.a.anatomy_ids.heart;
        let (Some(Some(h)), Some(r), Some(l)) = (
            heart.map(|c| self.ext[c as usize]),
            self.ext[self.lung_id(Side::Right) as usize],
            self.ext[self.lung_id(Side::Left) as usize],
        ) else {
            return Region::from_fn("retrocardiac region", self.map(), |_, _, _| false);
        };
        let midline = (r.bbox.x_max + l.bbox.x_min) as f64 / 2.0;
        let mid_y = (h.bbox.y_min + h.bbox.y_max) as f64 / 2.0;
        Region::from_fn("retrocardiac region", self.map(), |x, y, c| {
            Some(c) == heart && x as f64 >= midline && y as f64 >= mid_y
        })
    }

    /// Between the lungs, from the lung apices down to the top of the heart, and the
    /// heart itself: the mediastinal silhouette.
    pub fn mediastinum(&self) -> Region {
        let (rid, lid) = (self.lung_id(Side::Right), self.lung_id(Side::Left));
        let heart = self.a.anatomy_ids.heart;
        let map = self.map();
        let w = map.width;
        // per row: the gap between the right lung's last pixel and the left lung's first
        let gaps: Vec<Option<(usize, usize)>> = (0..map.height)
            .map(|y| {
                let row = &map.labels[y * w..(y + 1) * w];
                let r = row.iter().rposition(|&c| c == rid)?;
                let l = row.iter().position(|&c| c == lid)?;
                (r < l).then_some((r, l))
            })
            .collect();
        Region::from_fn("mediastinum", map, |x, y, c| {
            Some(c) == heart || gaps[y].is_some_and(|(r, l)| r < x && x < l)
        })
    }

    /// The opacity model's mean opacity mask, optionally on one side only.
    pub fn opacity(&self, side: Option<Side>) -> Option<Region> {
        let (m, ids) = self.a.opacity.as_ref()?;
        let op = ids.opacity?;
        let ext = extents(&m.mean, 8);
        let midline = match (ext[ids.right_lung as usize], ext[ids.left_lung as usize]) {
            (Some(r), Some(l)) => (r.centroid.0 + l.centroid.0) / 2.0,
            _ => m.mean.width as f64 / 2.0,
        };
        let name = match side {
            None => "opacity".to_string(),
            Some(s) => format!("{} lung opacity", side_name(s)),
        };
        Some(Region::from_fn(&name, &m.mean, |x, _, c| {
            c == op
                && match side {
                    None => true,
                    Some(Side::Right) => (x as f64) < midline,
                    Some(Side::Left) => (x as f64) >= midline,
                }
        }))
    }
}

pub fn side_name(s: Side) -> &'static str {
    match s {
        Side::Right => "right",
        Side::Left => "left",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maira_bins_by_hand() {
        let b = RegionBox::new(
            PixelBox {
                x_min: 0,
                y_min: 50,
                x_max: 199,
                y_max: 99,
            },
            200,
            100,
        );
        assert_eq!(b.bins, [0, 50, 99, 99]);
        assert_eq!(b.grounded(), "<box><x00><y50><x99><y99></box>");
    }
}

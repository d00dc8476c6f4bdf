//! Whether a predicted mask looks like a frontal chest film: images the model cannot
//! handle (lateral views, other body parts, non-radiographs) give masks that break these
//! checks, and radlens then says so instead of measuring them.

use super::geometry::{extents, AnatomyIds};
use radlens_io::LabelMap;
use serde::{Deserialize, Serialize};

/// The verdict and every failed check, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plausibility {
    pub plausible: bool,
    pub problems: Vec<String>,
}

/// Smallest share of the image one lung must cover.
const MIN_LUNG_FRACTION: f64 = 0.02;
/// Largest share of the narrower lung's width the two lungs may overlap horizontally.
const MAX_HORIZONTAL_OVERLAP: f64 = 0.25;
/// Smallest share of the shorter lung's height the two lungs must share vertically.
const MIN_VERTICAL_OVERLAP: f64 = 0.5;
/// Plausible cardiothoracic ratios (well beyond the clinical range either way).
const CTR_RANGE: (f64, f64) = (0.25, 0.85);

/// Check the mean mask of an anatomy model.
pub fn check(map: &LabelMap, ids: AnatomyIds) -> Plausibility {
    let n = [Some(ids.right_lung), Some(ids.left_lung), ids.heart]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0) as usize
        + 1;
    let ext = extents(map, n);
    let total = (map.width * map.height) as f64;
    let mut problems = Vec::new();
    let lung = |c: u8, name: &str, problems: &mut Vec<String>| match ext[c as usize] {
        Some(e) if e.pixels as f64 / total >= MIN_LUNG_FRACTION => Some(e),
        Some(e) => {
            problems.push(format!(
                "the {name} covers only {:.1}% of the image",
                100.0 * e.pixels as f64 / total
            ));
            None
        }
        None => {
            problems.push(format!("no {name} was found"));
            None
        }
    };
    let right = lung(ids.right_lung, "right lung", &mut problems);
    let left = lung(ids.left_lung, "left lung", &mut problems);
    if let (Some(r), Some(l)) = (right, left) {
        if r.centroid.0 >= l.centroid.0 {
            problems.push(
                "the right lung is not on the image's left (not a frontal view in standard orientation)"
                    .into(),
            );
        }
        let overlap = |a0: usize, a1: usize, b0: usize, b1: usize| {
            (a1.min(b1) as f64 - a0.max(b0) as f64 + 1.0).max(0.0)
        };
        let h = overlap(r.bbox.x_min, r.bbox.x_max, l.bbox.x_min, l.bbox.x_max)
            / r.bbox.width().min(l.bbox.width()) as f64;
        if h > MAX_HORIZONTAL_OVERLAP {
            problems.push(format!(
                "the lungs overlap horizontally by {:.0}% (a lateral view?)",
                100.0 * h
            ));
        }
        let v = overlap(r.bbox.y_min, r.bbox.y_max, l.bbox.y_min, l.bbox.y_max)
            / r.bbox.height().min(l.bbox.height()) as f64;
        if v < MIN_VERTICAL_OVERLAP {
            problems.push(format!(
                "the lungs share only {:.0}% of their height",
                100.0 * v
            ));
        }
        if let Some(heart) = ids.heart {
            match ext[heart as usize] {
                None => problems.push("no heart was found".into()),
                Some(hx) => {
                    let c = hx.centroid.0;
                    if !(r.centroid.0 < c && c < l.centroid.0) {
                        problems.push("the heart is not between the lungs".into());
                    }
                    let thorax =
                        r.bbox.x_max.max(l.bbox.x_max) - r.bbox.x_min.min(l.bbox.x_min) + 1;
                    let ctr = hx.bbox.width() as f64 / thorax as f64;
                    if !(CTR_RANGE.0..=CTR_RANGE.1).contains(&ctr) {
                        problems.push(format!(
                            "the cardiothoracic ratio {ctr:.2} is outside {:.2}-{:.2}",
                            CTR_RANGE.0, CTR_RANGE.1
                        ));
                    }
                }
            }
        }
    }
    Plausibility {
        plausible: problems.is_empty(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::super::geometry::tests::synthetic;
    use super::*;

    const IDS: AnatomyIds = AnatomyIds {
        right_lung: 1,
        left_lung: 2,
        heart: Some(3),
        opacity: None,
    };

    #[test]
    fn a_frontal_layout_passes() {
        let p = check(&synthetic(), IDS);
        assert!(p.plausible, "{:?}", p.problems);
    }

    #[test]
    fn swapped_missing_and_stacked_lungs_are_named() {
        let mut m = synthetic();
        for l in m.labels.iter_mut() {
            *l = match *l {
                1 => 2,
                2 => 1,
                x => x,
            };
        }
        let p = check(&m, IDS);
        assert!(!p.plausible);
        assert!(
            p.problems
                .iter()
                .any(|s| s.contains("not on the image's left")),
            "{:?}",
            p.problems
        );

        let mut m = synthetic();
        m.labels
            .iter_mut()
            .filter(|l| **l == 2)
            .for_each(|l| *l = 0);
        let p = check(&m, IDS);
        assert!(
            p.problems.iter().any(|s| s.contains("no left lung")),
            "{:?}",
            p.problems
        );

        // one lung above the other, same columns: a lateral-like layout
        let mut m = LabelMap::empty(10, 20);
        for y in 0..20 {
            for x in 2..8 {
                m.labels[y * 10 + x] = if y < 10 { 1 } else { 2 };
            }
        }
        let p = check(&m, IDS);
        assert!(
            p.problems
                .iter()
                .any(|s| s.contains("overlap horizontally")),
            "{:?}",
            p.problems
        );
        assert!(
            p.problems.iter().any(|s| s.contains("no heart")),
            "{:?}",
            p.problems
        );
    }
}

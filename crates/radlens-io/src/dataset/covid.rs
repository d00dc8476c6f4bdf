//! The COVID-19 Chest X-ray Segmentations Dataset (out-of-distribution set).
//!
//! `structure.csv` has one row per annotated structure; the structure's mask is
//! an RGBA crop of its bounding box whose non-zero colour pixels are the
//! structure, pasted at (`Left`, `Top`) into a canvas of `Resolution` (`WxH`).
//! Rows join to images on `Filename`; `metadata.csv` joins on `filename`.

use super::{Dataset, LabelSource, PatientMeta, Sample, Sex};
use crate::classes::{ClassId, ClassSchema};
use crate::error::{IoError, Result};
use crate::mask::{read_binary_mask, LabelMap};
use crate::table::{column, read_csv};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The structures radlens reads, in paint order (later wins), with their class names.
const STRUCTURES: [(&str, &str); 3] = [
    ("COVID-19 Cardiomediastinum", "cardiomediastinum"),
    ("COVID-19 Right Lung", "right_lung"),
    ("COVID-19 Left Lung", "left_lung"),
];

/// One structure's crop and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    pub class: ClassId,
    pub mask_path: PathBuf,
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl Crop {
    /// Paste the crop's foreground into `map` as its class.
    pub fn paint_into(&self, map: &mut LabelMap) -> Result<()> {
        let (w, h, m) = read_binary_mask(&self.mask_path)?;
        if (w, h) != (self.width, self.height) {
            return Err(IoError::invalid(
                &self.mask_path,
                format!(
                    "crop is {w}x{h} but structure.csv says {}x{}",
                    self.width, self.height
                ),
            ));
        }
        for y in 0..h {
            let cy = self.top + y;
            if cy >= map.height {
                break;
            }
            for x in 0..w {
                let cx = self.left + x;
                if cx < map.width && m[y * w + x] {
                    map.labels[cy * map.width + cx] = self.class;
                }
            }
        }
        Ok(())
    }
}

/// An image's canvas (w, h) and its crops, each with its paint order.
type ImageCrops = ((usize, usize), Vec<(usize, Crop)>);

fn parse_resolution(s: &str) -> Option<(usize, usize)> {
    let (w, h) = s.trim().split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// Index a covid-cxr folder: images with lungs and cardiomediastinum labels.
pub fn open(dir: &Path) -> Result<Dataset> {
    let classes = ClassSchema::new(["background", "right_lung", "left_lung", "cardiomediastinum"]);
    let structure = dir.join("structure.csv");
    let (h, rows) = read_csv(&structure)?;
    let [c_class, c_file, c_mask, c_res, c_top, c_left, c_w, c_h] = [
        "Class",
        "Filename",
        "Mask",
        "Resolution",
        "Top",
        "Left",
        "Width",
        "Height",
    ]
    .map(|n| column(&h, n, &structure));
    let (c_class, c_file, c_mask, c_res) = (c_class?, c_file?, c_mask?, c_res?);
    let (c_top, c_left, c_w, c_h) = (c_top?, c_left?, c_w?, c_h?);

    // file name -> (canvas size, crops tagged with their paint order)
    let mut per_image: BTreeMap<String, ImageCrops> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(order) = STRUCTURES
            .iter()
            .position(|(c, _)| *c == r.get(c_class).unwrap_or(""))
        else {
            continue;
        };
        let bad = |why: String| IoError::invalid(&structure, format!("row {}: {why}", i + 2));
        let num = |c: usize| -> Result<usize> {
            let v = r.get(c).unwrap_or("").trim();
            v.parse()
                .map_err(|_| bad(format!("'{v}' is not a pixel count")))
        };
        let mask_path = dir.join(r.get(c_mask).unwrap_or(""));
        if !mask_path.is_file() {
            continue; // documented: a few mask files are missing; treat as absent
        }
        let canvas = parse_resolution(r.get(c_res).unwrap_or(""))
            .ok_or_else(|| bad(format!("bad Resolution '{}'", r.get(c_res).unwrap_or(""))))?;
        let crop = Crop {
            class: classes.id(STRUCTURES[order].1).expect("class in schema"),
            mask_path,
            left: num(c_left)?,
            top: num(c_top)?,
            width: num(c_w)?,
            height: num(c_h)?,
        };
        let entry = per_image
            .entry(r.get(c_file).unwrap_or("").to_string())
            .or_insert((canvas, Vec::new()));
        entry.1.push((order, crop));
    }

    let metadata = dir.join("metadata.csv");
    let meta = if metadata.is_file() {
        read_metadata(&metadata)?
    } else {
        HashMap::new()
    };

    let mut samples = Vec::new();
    for (file, (canvas, mut crops)) in per_image {
        let image_path = dir.join("images").join(&file);
        if !image_path.is_file() {
            continue;
        }
        crops.sort_by_key(|(o, _)| *o);
        samples.push(Sample {
            id: file.clone(),
            image_path,
            labels: LabelSource::Crops {
                canvas,
                crops: crops.into_iter().map(|(_, c)| c).collect(),
            },
            meta: meta.get(&file).cloned().unwrap_or_default(),
            spacing: None,
            stratum: "all".into(),
            jsrt: None,
        });
    }
    Ok(Dataset {
        spec_name: format!("covid-cxr:{}", dir.display()),
        classes,
        samples,
    })
}

fn read_metadata(path: &Path) -> Result<HashMap<String, PatientMeta>> {
    let (h, rows) = read_csv(path)?;
    let [c_file, c_sex, c_age, c_view] =
        ["filename", "sex", "age", "view"].map(|n| column(&h, n, path));
    let (c_file, c_sex, c_age, c_view) = (c_file?, c_sex?, c_age?, c_view?);
    Ok(rows
        .iter()
        .map(|r| {
            let get = |c: usize| r.get(c).unwrap_or("").trim();
            let view = get(c_view);
            (
                get(c_file).to_string(),
                PatientMeta {
                    age_years: get(c_age).parse().ok(),
                    sex: Sex::parse(get(c_sex)),
                    view: (!view.is_empty()).then(|| view.to_string()),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_is_pasted_and_clipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        // 3x2 RGBA crop: red where structure, black elsewhere, alpha opaque
        let px = [255u8, 0, 0, 255, 0, 0, 0, 255, 255, 0, 0, 255];
        let mut data = px.to_vec();
        data.extend(px);
        image::RgbaImage::from_raw(3, 2, data)
            .unwrap()
            .save(&p)
            .unwrap();
        let crop = Crop {
            class: 2,
            mask_path: p,
            left: 2,
            top: 1,
            width: 3,
            height: 2,
        };
        let mut map = LabelMap::empty(4, 3);
        crop.paint_into(&mut map).unwrap();
        assert_eq!(map.labels, vec![0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0]);
        let wrong = Crop { width: 4, ..crop };
        let e = wrong.paint_into(&mut map).unwrap_err().to_string();
        assert!(e.contains("m.png") && e.contains("3x2"), "{e}");
    }
}

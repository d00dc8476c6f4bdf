//! The COVID-19 Chest X-ray Segmentations Dataset (out-of-distribution set).
//!
//! `structure.csv` has one row per annotated structure; the structure's mask is
//! an RGBA crop of its bounding box whose non-zero colour pixels are the
//! structure, pasted at (`Left`, `Top`) into a canvas of `Resolution` (`WxH`).
//! Rows join to images on `Filename`; `metadata.csv` joins on `filename` and gives each
//! image its patient's [`attributes`](crate::attributes).

use super::{Dataset, LabelSource, Sample};
use crate::attributes::{self as attr, Attributes, Sex};
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

/// With `covid-cxr+opacity:`, ground-glass opacity and consolidation are merged into one
/// `opacity` class painted over the lungs (they lie inside them).
const OPACITY: [(&str, &str); 2] = [
    ("COVID-19 Ground Glass Opacities", "opacity"),
    ("COVID-19 Consolidation", "opacity"),
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

/// Index a covid-cxr folder: images with lungs and cardiomediastinum labels, and
/// with `with_opacity` the merged opacity class painted last.
pub fn open(dir: &Path, with_opacity: bool) -> Result<Dataset> {
    let mut names = vec!["background", "right_lung", "left_lung", "cardiomediastinum"];
    let mut structures = STRUCTURES.to_vec();
    if with_opacity {
        names.push("opacity");
        structures.extend(OPACITY);
    }
    let classes = ClassSchema::new(names);
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
        let Some(order) = structures
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
            class: classes.id(structures[order].1).expect("class in schema"),
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
            attributes: meta.get(&file).cloned().unwrap_or_default(),
            spacing: None,
        });
    }
    Ok(Dataset {
        spec_name: format!("covid-cxr:{}", dir.display()),
        classes,
        samples,
    })
}

/// How a `metadata.csv` column is read into an attribute.
#[derive(Debug, Clone, Copy)]
enum Column {
    Category,
    Number,
    /// `Y` or `N`.
    Flag,
    /// `M` or `F`, stored as `male` / `female`.
    Sex,
}

/// The `metadata.csv` columns radlens reads, with their attribute names. Free text
/// (clinical notes), links and licences are not patient attributes and stay in the file.
const METADATA: [(&str, &str, Column); 21] = [
    ("patientid", attr::PATIENT_ID, Column::Category),
    ("offset", attr::OFFSET_DAYS, Column::Number),
    ("sex", attr::SEX, Column::Sex),
    ("age", attr::AGE_YEARS, Column::Number),
    ("finding", attr::FINDING, Column::Category),
    ("survival", attr::SURVIVED, Column::Flag),
    ("intubated", attr::INTUBATED, Column::Flag),
    ("intubation_present", attr::INTUBATION_PRESENT, Column::Flag),
    ("went_icu", attr::WENT_ICU, Column::Flag),
    ("in_icu", attr::IN_ICU, Column::Flag),
    (
        "needed_supplemental_O2",
        attr::NEEDED_SUPPLEMENTAL_O2,
        Column::Flag,
    ),
    ("extubated", attr::EXTUBATED, Column::Flag),
    ("temperature", attr::TEMPERATURE_C, Column::Number),
    ("pO2_saturation", attr::PO2_SATURATION, Column::Number),
    ("leukocyte_count", attr::LEUKOCYTE_COUNT, Column::Number),
    ("neutrophil_count", attr::NEUTROPHIL_COUNT, Column::Number),
    ("lymphocyte_count", attr::LYMPHOCYTE_COUNT, Column::Number),
    ("view", attr::VIEW, Column::Category),
    ("modality", attr::MODALITY, Column::Category),
    ("date", attr::DATE, Column::Category),
    ("location", attr::SITE, Column::Category),
];

/// Columns a `metadata.csv` must have: the join key and the demographics.
const REQUIRED: [&str; 4] = ["filename", "sex", "age", "view"];

/// Stores one field under `name`; a blank or unreadable field leaves it absent (the
/// metadata is incomplete by design: some sex/age values are blank).
fn insert_field(a: &mut Attributes, name: &str, how: Column, text: &str) {
    if text.is_empty() {
        return;
    }
    match how {
        Column::Category => a.insert(name, text),
        Column::Number => {
            if let Ok(x) = text.parse() {
                a.insert_number(name, x)
            }
        }
        Column::Flag => match text {
            "Y" => a.insert(name, true),
            "N" => a.insert(name, false),
            _ => {}
        },
        Column::Sex => {
            if let Some(sex) = Sex::parse(text) {
                a.insert(name, sex)
            }
        }
    }
}

/// Reads `metadata.csv`: attributes by image file name.
fn read_metadata(path: &Path) -> Result<HashMap<String, Attributes>> {
    let (h, rows) = read_csv(path)?;
    for name in REQUIRED {
        column(&h, name, path)?;
    }
    let c_file = column(&h, "filename", path)?;
    let columns: Vec<_> = METADATA
        .iter()
        .filter_map(|&(col, name, how)| Some((column(&h, col, path).ok()?, name, how)))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            let get = |c: usize| r.get(c).unwrap_or("").trim();
            let mut a = Attributes::default();
            for &(c, name, how) in &columns {
                insert_field(&mut a, name, how, get(c));
            }
            (get(c_file).to_string(), a)
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

    #[test]
    fn metadata_fields_are_typed_and_blank_or_unreadable_ones_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metadata.csv");
        std::fs::write(
            &p,
            "filename,sex,age,view,survival,temperature\n\
             a.png,F,,AP,Y,37.5\n\
             b.png,U,abc,,maybe,\n",
        )
        .unwrap();
        let m = read_metadata(&p).unwrap();
        let a = &m["a.png"];
        assert_eq!(
            (a.sex(), a.age_years(), a.view()),
            (Some(Sex::Female), None, Some("AP"))
        );
        assert_eq!(a.flag(attr::SURVIVED), Some(true));
        assert_eq!(a.number(attr::TEMPERATURE_C), Some(37.5));
        assert_eq!(m["b.png"], Attributes::default());

        std::fs::write(&p, "filename,sex,age\na.png,F,50\n").unwrap();
        let e = read_metadata(&p).unwrap_err().to_string();
        assert!(
            e.contains("metadata.csv") && e.contains("no 'view' column"),
            "{e}"
        );
    }
}

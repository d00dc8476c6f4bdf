//! JSRT radiographs with SCR masks and the official clinical tables.
//!
//! Layout: `images/<case>.png`, `masks/<organ>/<case>.png`, `CLNDAT_EN.txt`
//! (nodule cases) and `CNNDAT_EN.TXT` (non-nodule cases). Images are 1024 x 1024,
//! resampled from the 2048 x 2048, 0.175 mm originals, so a pixel is 0.35 mm.
//!
//! Every sample carries the view (PA), whether it is a nodule case (JSRT names them
//! `JPCLN*`, the others `JPCNN*`) and its clinical record as [`attributes`](crate::attributes).

use super::{read_to_string_lossy, Dataset, LabelSource, Sample};
use crate::attributes::{self as attr, Attributes, Sex};
use crate::classes::ClassSchema;
use crate::error::{IoError, Result};
use crate::xray::PixelSpacing;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Pixel spacing of the 1024 x 1024 JSRT images.
pub const JSRT_SPACING_MM: f64 = 0.35;

/// Width of the grid the clinical tables' nodule coordinates refer to.
pub const JSRT_TABLE_GRID: usize = 2048;

/// Benign or malignant nodule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Malignancy {
    Benign,
    Malignant,
}

impl Malignancy {
    /// `benign` or `malignant`, as the table writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Benign => "benign",
            Self::Malignant => "malignant",
        }
    }
}

/// The patient's side, as written in the nodule location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
}

impl Side {
    /// `right` or `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Left => "left",
        }
    }
}

/// A nodule as recorded in `CLNDAT_EN.txt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nodule {
    /// Subtlety, 1 (extremely subtle) to 5 (obvious).
    pub subtlety: u8,
    pub size_mm: f32,
    /// Nodule centre in the 2048 x 2048 grid of the original images, pixels.
    pub x_2048: u32,
    pub y_2048: u32,
    pub malignancy: Malignancy,
    /// Location as written, e.g. "r.middle lobe(S4)".
    pub location: String,
    pub side: Option<Side>,
    pub diagnosis: String,
}

impl Nodule {
    /// Nodule centre in a `width` x `height` resampling of the image.
    pub fn centre_in(&self, width: usize, height: usize) -> (f64, f64) {
        let g = JSRT_TABLE_GRID as f64;
        (
            self.x_2048 as f64 * width as f64 / g,
            self.y_2048 as f64 * height as f64 / g,
        )
    }
}

/// One case's clinical record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicalRecord {
    pub case: String,
    pub age_years: Option<u8>,
    pub sex: Option<Sex>,
    pub nodule: Option<Nodule>,
}

impl ClinicalRecord {
    /// The record as sample attributes: age, sex and the nodule's description.
    pub fn attributes(&self) -> Attributes {
        let mut a = Attributes::default();
        if let Some(age) = self.age_years {
            a.insert_number(attr::AGE_YEARS, age.into());
        }
        if let Some(sex) = self.sex {
            a.insert(attr::SEX, sex);
        }
        if let Some(n) = &self.nodule {
            a.insert_number(attr::NODULE_SUBTLETY, n.subtlety.into());
            a.insert_number(attr::NODULE_SIZE_MM, n.size_mm.into());
            a.insert_number(attr::NODULE_X_2048, n.x_2048.into());
            a.insert_number(attr::NODULE_Y_2048, n.y_2048.into());
            a.insert(attr::NODULE_MALIGNANCY, n.malignancy.as_str());
            a.insert(attr::NODULE_LOCATION, n.location.as_str());
            if let Some(side) = n.side {
                a.insert(attr::NODULE_SIDE, side.as_str());
            }
            a.insert(attr::DIAGNOSIS, n.diagnosis.as_str());
        }
        a
    }
}

/// Join the two halves of a field the table wrapped at a fixed width.
/// The wrap drops a space when it fell on one, which shows as a first half
/// shorter than the column; a full-width first half continues mid-word unless
/// it ends in one of the table's whole words.
fn join_wrapped(a: &str, b: &str, width: usize) -> String {
    const WHOLE_WORDS: [&str; 3] = ["upper", "lower", "inflammatory"];
    let (a, b) = (a.trim_end(), b.trim());
    if b.is_empty() {
        return a.to_string();
    }
    let ends_word = WHOLE_WORDS.iter().any(|w| a.ends_with(w));
    if a.chars().count() < width || ends_word {
        format!("{a} {b}")
    } else {
        format!("{a}{b}")
    }
}

fn parse_age(s: &str) -> Option<u8> {
    s.trim().parse().ok()
}

/// The records of a table whose records each begin with `marker` (the tables'
/// line breaks are not reliable, the case names are).
fn records<'a>(text: &'a str, marker: &str) -> impl Iterator<Item = &'a str> {
    let starts: Vec<usize> = text.match_indices(marker).map(|(i, _)| i).collect();
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([text.len()]).collect();
    starts.into_iter().zip(ends).map(move |(s, e)| &text[s..e])
}

/// Parse `CLNDAT_EN.txt`: records start at `JPCLN###.IMG`, fields are tab
/// separated, and the location and diagnosis columns are each wrapped into two
/// tab-separated halves (7 and 12 characters wide).
pub fn parse_nodule_table(text: &str, path: &Path) -> Result<Vec<ClinicalRecord>> {
    let mut out = Vec::new();
    for rec in records(text, "JPCLN") {
        let rec = rec.trim_end_matches(['\r', '\n']);
        let f: Vec<&str> = rec.split('\t').collect();
        let bad = |why: &str| IoError::invalid(path, format!("record '{}': {why}", f[0]));
        if f.len() < 10 {
            return Err(bad(&format!("{} fields, expected at least 10", f.len())));
        }
        let num = |k: usize, what: &str| -> Result<f64> {
            f[k].trim()
                .parse::<f64>()
                .map_err(|_| bad(&format!("{what} '{}' is not a number", f[k])))
        };
        let get = |k: usize| f.get(k).copied().unwrap_or("");
        let location = join_wrapped(get(8), get(9), 7);
        let diagnosis = join_wrapped(get(10), get(11), 12);
        let side = if location.starts_with("r.") || location.starts_with("right") {
            Some(Side::Right)
        } else if location.starts_with("l.") || location.starts_with("left") {
            Some(Side::Left)
        } else {
            None
        };
        let malignancy = match f[7].trim() {
            "malignant" => Malignancy::Malignant,
            "benign" => Malignancy::Benign,
            other => return Err(bad(&format!("unknown malignancy '{other}'"))),
        };
        out.push(ClinicalRecord {
            case: f[0].trim().trim_end_matches(".IMG").to_string(),
            age_years: parse_age(f[3]),
            sex: Sex::parse(f[4]),
            nodule: Some(Nodule {
                subtlety: num(1, "subtlety")? as u8,
                size_mm: num(2, "size")? as f32,
                x_2048: num(5, "x")? as u32,
                y_2048: num(6, "y")? as u32,
                malignancy,
                location,
                side,
                diagnosis,
            }),
        });
    }
    Ok(out)
}

/// Parse `CNNDAT_EN.TXT`: whitespace-separated `JPCNN###.IMG age sex non-nodule`.
pub fn parse_non_nodule_table(text: &str, path: &Path) -> Result<Vec<ClinicalRecord>> {
    let mut out = Vec::new();
    for rec in records(text, "JPCNN") {
        let f: Vec<&str> = rec.split_whitespace().collect();
        if f.len() < 3 {
            return Err(IoError::invalid(
                path,
                format!("record '{}' has {} fields, expected 4", f[0], f.len()),
            ));
        }
        out.push(ClinicalRecord {
            case: f[0].trim_end_matches(".IMG").to_string(),
            age_years: parse_age(f[1]),
            sex: Sex::parse(f[2]),
            nodule: None,
        });
    }
    Ok(out)
}

/// Read both clinical tables of a JSRT folder, keyed by case id.
pub fn read_clinical(dir: &Path) -> Result<HashMap<String, ClinicalRecord>> {
    let mut all = HashMap::new();
    let nod = dir.join("CLNDAT_EN.txt");
    for r in parse_nodule_table(&read_to_string_lossy(&nod)?, &nod)? {
        all.insert(r.case.clone(), r);
    }
    let non = dir.join("CNNDAT_EN.TXT");
    for r in parse_non_nodule_table(&read_to_string_lossy(&non)?, &non)? {
        all.insert(r.case.clone(), r);
    }
    Ok(all)
}

/// Index a JSRT folder. With `with_clavicles` the clavicles are classes 4 and 5.
pub fn open(dir: &Path, with_clavicles: bool) -> Result<Dataset> {
    let classes = ClassSchema::jsrt(with_clavicles);
    let clinical = read_clinical(dir)?;
    let images = dir.join("images");
    let mut entries: Vec<_> = std::fs::read_dir(&images)
        .map_err(|e| IoError::fs(&images, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    entries.sort();
    let mut samples = Vec::with_capacity(entries.len());
    for image_path in entries {
        let id = image_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let masks = classes
            .foreground()
            .map(|c| {
                (
                    c,
                    dir.join("masks")
                        .join(classes.name(c))
                        .join(format!("{id}.png")),
                )
            })
            .collect();
        let mut attributes = clinical
            .get(&id)
            .map(ClinicalRecord::attributes)
            .unwrap_or_default();
        attributes.insert(attr::VIEW, "PA");
        attributes.insert(attr::NODULE, id.starts_with("JPCLN"));
        samples.push(Sample {
            id,
            image_path,
            labels: LabelSource::BinaryMasks(masks),
            attributes,
            spacing: Some(PixelSpacing::isotropic(JSRT_SPACING_MM)),
        });
    }
    Ok(Dataset {
        spec_name: format!("jsrt:{}", dir.display()),
        classes,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_fields_are_rejoined() {
        let t = "JPCLN002.IMG\t5\t30\t78\tfemale\t1614\t1090\tbenign\tl.upper\tlobe(S5)\tpulmonary he\tmatoma\rJPCLN004.IMG\t5\t14\t68\tfemale\t606\t836\tbenign\tr.upper\tlobe\tinflammatory\tmass\rJPCLN015.IMG\t4\t16\t?\tfemale\t549\t995\tmalignant\tr.middl\te lobe\tlung cancer\t\rJPCLN113.IMG\t4\t16\t58\tfemale\t549\t995\tmalignant\tleft lu\tng\tlung cancer\tor metastasis";
        let r = parse_nodule_table(t, Path::new("t")).unwrap();
        assert_eq!(r.len(), 4);
        let n: Vec<_> = r.iter().map(|r| r.nodule.clone().unwrap()).collect();
        assert_eq!(n[0].diagnosis, "pulmonary hematoma");
        assert_eq!(n[0].location, "l.upper lobe(S5)");
        assert_eq!(n[0].side, Some(Side::Left));
        assert_eq!(n[1].diagnosis, "inflammatory mass");
        assert_eq!(n[2].location, "r.middle lobe");
        assert_eq!(r[2].age_years, None);
        assert_eq!(n[3].location, "left lung");
        assert_eq!(n[3].diagnosis, "lung cancer or metastasis");
        assert_eq!(r[0].age_years, Some(78));
        assert_eq!(n[0].malignancy, Malignancy::Benign);
        assert_eq!((n[0].x_2048, n[0].y_2048), (1614, 1090));
        assert_eq!(n[0].centre_in(1024, 1024), (807.0, 545.0));
    }

    #[test]
    fn non_nodule_table() {
        let t = "JPCNN001.IMG 30  female   non-nodule\rJPCNN002.IMG ?  male     non-nodule\r";
        let r = parse_non_nodule_table(t, Path::new("t")).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].sex, Some(Sex::Female));
        assert_eq!(r[1].age_years, None);
        assert!(r[1].nodule.is_none());
    }
}

//! The nnU-Net v2 raw layout for users' own 2D data:
//! `dataset.json`, `imagesTr/<case>_0000<ending>`, `labelsTr/<case><ending>`.

use super::{Dataset, LabelSource, Sample};
use crate::classes::ClassSchema;
use crate::error::{IoError, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct DatasetJson {
    labels: BTreeMap<String, serde_json::Value>,
    file_ending: String,
    #[serde(rename = "numTraining")]
    num_training: Option<usize>,
}

/// Index an nnU-Net v2 raw dataset folder (single-channel 2D images).
pub fn open(dir: &Path) -> Result<Dataset> {
    let json_path = dir.join("dataset.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| IoError::fs(&json_path, e))?;
    let dj: DatasetJson = serde_json::from_str(&text).map_err(|e| {
        IoError::invalid(&json_path, format!("not an nnU-Net v2 dataset.json: {e}"))
    })?;
    if matches!(
        dj.file_ending.as_str(),
        ".nii.gz" | ".nii" | ".nrrd" | ".mha"
    ) {
        return Err(IoError::invalid(
            &json_path,
            format!("file_ending '{}' is a 3D volume format; radlens reads 2D images (.png, .jpg, .dcm)", dj.file_ending),
        ));
    }
    // labels: name -> id (int; region-based lists are not supported)
    let mut by_id: BTreeMap<u64, String> = BTreeMap::new();
    for (name, v) in &dj.labels {
        let id = v.as_u64().ok_or_else(|| {
            IoError::invalid(
                &json_path,
                format!(
                    "label '{name}' is not an integer id (region-based labels are not supported)"
                ),
            )
        })?;
        by_id.insert(id, name.clone());
    }
    if by_id.keys().copied().ne(0..by_id.len() as u64) {
        return Err(IoError::invalid(
            &json_path,
            "label ids must be 0, 1, 2, ... without gaps",
        ));
    }
    let classes = ClassSchema::new(by_id.into_values());
    let images = dir.join("imagesTr");
    let mut files: Vec<_> = std::fs::read_dir(&images)
        .map_err(|e| IoError::fs(&images, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let suffix = format!("_0000{}", dj.file_ending);
    let mut samples = Vec::new();
    for image_path in files {
        let name = image_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some(case) = name.strip_suffix(&suffix) else {
            continue;
        };
        let label = dir
            .join("labelsTr")
            .join(format!("{case}{}", dj.file_ending));
        if !label.is_file() {
            return Err(IoError::invalid(
                &label,
                format!("label file for case '{case}' not found"),
            ));
        }
        samples.push(Sample {
            id: case.to_string(),
            image_path,
            labels: LabelSource::LabelPng(label),
            // The raw layout records no patient attributes.
            attributes: Default::default(),
            spacing: None,
        });
    }
    if let Some(n) = dj.num_training {
        if n != samples.len() {
            return Err(IoError::invalid(
                &json_path,
                format!(
                    "numTraining is {n} but imagesTr holds {} cases ending in '{suffix}'",
                    samples.len()
                ),
            ));
        }
    }
    Ok(Dataset {
        spec_name: format!("nnunet:{}", dir.display()),
        classes,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_case(dir: &Path, case: &str) {
        std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
        std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
        image::GrayImage::from_raw(2, 2, vec![0, 50, 100, 150])
            .unwrap()
            .save(dir.join("imagesTr").join(format!("{case}_0000.png")))
            .unwrap();
        image::GrayImage::from_raw(2, 2, vec![0, 1, 2, 1])
            .unwrap()
            .save(dir.join("labelsTr").join(format!("{case}.png")))
            .unwrap();
    }

    #[test]
    fn reads_layout_and_labels() {
        let d = tempfile::tempdir().unwrap();
        write_case(d.path(), "cxr_001");
        write_case(d.path(), "cxr_002");
        std::fs::write(
            d.path().join("dataset.json"),
            r#"{"channel_names":{"0":"X-ray"},"labels":{"background":0,"lung":1,"heart":2},"numTraining":2,"file_ending":".png"}"#,
        )
        .unwrap();
        let ds = open(d.path()).unwrap();
        assert_eq!(ds.classes.names, vec!["background", "lung", "heart"]);
        assert_eq!(ds.samples.len(), 2);
        assert_eq!(ds.samples[1].id, "cxr_002");
        let img = ds.samples[0].load_image().unwrap();
        let lab = ds.samples[0].load_labels((img.width, img.height)).unwrap();
        assert_eq!(lab.labels, vec![0, 1, 2, 1]);
        assert!(ds.samples[0]
            .load_labels((3, 3))
            .unwrap_err()
            .to_string()
            .contains("2x2"));
    }

    #[test]
    fn count_mismatch_and_3d_are_errors() {
        let d = tempfile::tempdir().unwrap();
        write_case(d.path(), "a");
        std::fs::write(
            d.path().join("dataset.json"),
            r#"{"labels":{"background":0,"x":1},"numTraining":3,"file_ending":".png"}"#,
        )
        .unwrap();
        assert!(open(d.path())
            .unwrap_err()
            .to_string()
            .contains("numTraining is 3"));
        std::fs::write(
            d.path().join("dataset.json"),
            r#"{"labels":{"background":0},"numTraining":1,"file_ending":".nii.gz"}"#,
        )
        .unwrap();
        assert!(open(d.path()).unwrap_err().to_string().contains("3D"));
    }
}

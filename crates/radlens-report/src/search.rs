//! Visual search: a query in words resolved to a region of the image (anatomy derived
//! geometrically from the masks, the opacity mask, or the region where a CheXpert
//! observation is read), with its box and a rendered overlay.

use crate::analysis::Analysis;
use crate::findings::{measured_findings, MeasuredFinding};
use crate::label::Observation;
use crate::regions::{Region, RegionBox, RegionMap, Side};
use serde::{Deserialize, Serialize};

/// Every query radlens answers (sides optional where a structure has two).
pub const SEARCHABLE: &str = "lungs, right/left lung, heart, apices (right/left apex), lung bases, costophrenic angles (right/left), hila (right/left hilum), retrocardiac region, mediastinum, opacity (right/left), enlarged heart, or a CheXpert observation (Cardiomegaly, Lung Opacity, Consolidation, Pneumonia, Edema, Atelectasis, Pleural Effusion, Pneumothorax, Enlarged Cardiomediastinum)";

/// What a query resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub query: String,
    pub ai_generated: bool,
    /// Whether the query was understood.
    pub found: bool,
    /// The region's name ("left costophrenic angle").
    pub region: Option<String>,
    pub region_box: Option<RegionBox>,
    /// MAIRA-2's grounded form of the answer.
    pub grounded: Option<String>,
    pub area_pixels: usize,
    /// Measured findings that bear on the query.
    pub findings: Vec<MeasuredFinding>,
    /// What the answer means (how the region was derived, what radlens does not measure).
    pub note: String,
}

/// The region a query names, with a note on how it was derived.
fn resolve(q: &str, r: &RegionMap) -> Option<(Region, String, Vec<Observation>)> {
    let q = q.trim().to_lowercase();
    let side = if q.contains("left") {
        Some(Side::Left)
    } else if q.contains("right") {
        Some(Side::Right)
    } else {
        None
    };
    let both = |f: &dyn Fn(Side) -> Region, name: &str| match side {
        Some(s) => f(s),
        None => Region::union(name, &[f(Side::Right), f(Side::Left)]),
    };
    let geometric = "derived geometrically from the segmentation masks (radlens' convention, not an anatomical segmentation)";
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    let obs = Observation::parse(&q);
    if has(&["costophrenic", "cp angle"]) || obs == Some(Observation::PleuralEffusion) {
        let note = if obs == Some(Observation::PleuralEffusion) {
            format!("radlens has no effusion model: the costophrenic angles, where effusion is read, {geometric}")
        } else {
            format!("lower lateral corners of the lungs, {geometric}")
        };
        return Some((
            both(&|s| r.costophrenic_angle(s), "costophrenic angles"),
            note,
            vec![],
        ));
    }
    if has(&["apex", "apices", "apical"]) || obs == Some(Observation::Pneumothorax) {
        let note = if obs == Some(Observation::Pneumothorax) {
            format!("radlens has no pneumothorax model: the apices, where a pneumothorax is first seen on an upright film, {geometric}")
        } else {
            format!("upper fifth of each lung, {geometric}")
        };
        return Some((both(&|s| r.apex(s), "apices"), note, vec![]));
    }
    if has(&["hilum", "hila", "hilar"]) {
        return Some((
            both(&|s| r.hilum(s), "hila"),
            format!("medial middle part of each lung, {geometric}"),
            vec![],
        ));
    }
    if has(&["base", "bases", "basal", "basilar"]) || obs == Some(Observation::Atelectasis) {
        let note =
            format!("lower fifth of each lung, {geometric}; radlens has no atelectasis model");
        return Some((both(&|s| r.base(s), "lung bases"), note, vec![]));
    }
    if has(&["retrocardiac", "behind the heart"]) {
        return Some((
            r.retrocardiac(),
            format!("heart on the patient's left of the midline, lower half, {geometric}"),
            vec![],
        ));
    }
    if has(&["mediastin"]) || obs == Some(Observation::EnlargedCardiomediastinum) {
        return Some((
            r.mediastinum(),
            format!("between the lungs and the heart, {geometric}"),
            vec![],
        ));
    }
    if has(&["heart", "cardiac"]) || obs == Some(Observation::Cardiomegaly) {
        return Some((
            r.heart(),
            "the heart mask of the anatomy model; its size is the CTR finding".into(),
            vec![Observation::Cardiomegaly],
        ));
    }
    if has(&[
        "opacit",
        "consolidat",
        "infiltrat",
        "airspace",
        "pneumonia",
        "edema",
        "ground glass",
        "ground-glass",
    ]) || matches!(
        obs,
        Some(
            Observation::LungOpacity
                | Observation::Consolidation
                | Observation::Pneumonia
                | Observation::Edema
        )
    ) {
        let region = r.opacity(side)?;
        return Some((
            region,
            "the opacity model's mask (ground-glass opacity and consolidation, merged)".into(),
            vec![Observation::LungOpacity],
        ));
    }
    if has(&["lung"]) {
        return Some((
            both(&|s| r.lung(s), "lungs"),
            "the lung masks of the anatomy model".into(),
            vec![],
        ));
    }
    None
}

/// Answer `query` on the analysed image.
pub fn search(a: &Analysis, query: &str) -> SearchResult {
    let empty = |note: String| SearchResult {
        query: query.to_string(),
        ai_generated: true,
        found: false,
        region: None,
        region_box: None,
        grounded: None,
        area_pixels: 0,
        findings: vec![],
        note,
    };
    if !a.measurements.plausibility.plausible {
        return empty(format!(
            "the image cannot be searched: {}",
            a.measurements.plausibility.problems.join("; ")
        ));
    }
    let regions = RegionMap::new(a);
    let Some((region, note, related)) = resolve(query, &regions) else {
        let why = if a.opacity.is_none() && query.to_lowercase().contains("opac") {
            "opacity needs the opacity model (--opacity-model)".to_string()
        } else {
            format!("radlens cannot search for '{query}'; it can search for: {SEARCHABLE}")
        };
        return empty(why);
    };
    let bbox = region.bbox();
    let findings: Vec<MeasuredFinding> = measured_findings(a)
        .into_iter()
        .filter(|f| related.contains(&f.observation))
        .collect();
    SearchResult {
        query: query.to_string(),
        ai_generated: true,
        found: true,
        region: Some(region.name.clone()),
        grounded: bbox.map(|b| format!("<obj>{}{}</obj>", region.name, b.grounded())),
        region_box: bbox,
        area_pixels: region.pixels(),
        findings,
        note: if bbox.is_none() {
            format!("{note}; the region is empty on this image")
        } else {
            note
        },
    }
}

/// The image with `region` tinted and outlined, as RGB.
pub fn render(a: &Analysis, query: &str) -> Option<Vec<u8>> {
    let regions = RegionMap::new(a);
    let (region, _, _) = resolve(query, &regions)?;
    let map = radlens_io::LabelMap {
        width: region.width,
        height: region.height,
        labels: region.mask.iter().map(|&m| u8::from(m)).collect(),
    };
    Some(radlens_seg::render::overlay(&a.image, &map))
}

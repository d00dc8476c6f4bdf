//! The observations the labeller reports: CheXpert's 14, in CheXpert's column order and
//! spelling, then Emphysema, Granuloma and Nodule; `Other` is internal.

use serde::{Deserialize, Serialize};

/// One labelled observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Observation {
    #[serde(rename = "No Finding")]
    NoFinding,
    #[serde(rename = "Enlarged Cardiomediastinum")]
    EnlargedCardiomediastinum,
    Cardiomegaly,
    #[serde(rename = "Lung Lesion")]
    LungLesion,
    #[serde(rename = "Lung Opacity")]
    LungOpacity,
    Edema,
    Consolidation,
    Pneumonia,
    Atelectasis,
    Pneumothorax,
    #[serde(rename = "Pleural Effusion")]
    PleuralEffusion,
    #[serde(rename = "Pleural Other")]
    PleuralOther,
    Fracture,
    #[serde(rename = "Support Devices")]
    SupportDevices,
    Emphysema,
    Granuloma,
    Nodule,
    /// An abnormality outside the columns (degenerative change, scoliosis, calcification,
    /// ...): never a column; it keeps `No Finding` empty.
    Other,
}

impl Observation {
    /// The label columns, in output order.
    pub const COLUMNS: [Observation; 17] = [
        Self::NoFinding,
        Self::EnlargedCardiomediastinum,
        Self::Cardiomegaly,
        Self::LungLesion,
        Self::LungOpacity,
        Self::Edema,
        Self::Consolidation,
        Self::Pneumonia,
        Self::Atelectasis,
        Self::Pneumothorax,
        Self::PleuralEffusion,
        Self::PleuralOther,
        Self::Fracture,
        Self::SupportDevices,
        Self::Emphysema,
        Self::Granuloma,
        Self::Nodule,
    ];

    /// The column name (CheXpert's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Self::NoFinding => "No Finding",
            Self::EnlargedCardiomediastinum => "Enlarged Cardiomediastinum",
            Self::Cardiomegaly => "Cardiomegaly",
            Self::LungLesion => "Lung Lesion",
            Self::LungOpacity => "Lung Opacity",
            Self::Edema => "Edema",
            Self::Consolidation => "Consolidation",
            Self::Pneumonia => "Pneumonia",
            Self::Atelectasis => "Atelectasis",
            Self::Pneumothorax => "Pneumothorax",
            Self::PleuralEffusion => "Pleural Effusion",
            Self::PleuralOther => "Pleural Other",
            Self::Fracture => "Fracture",
            Self::SupportDevices => "Support Devices",
            Self::Emphysema => "Emphysema",
            Self::Granuloma => "Granuloma",
            Self::Nodule => "Nodule",
            Self::Other => "Other",
        }
    }

    /// The observation named `name` (column spelling, case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Self::COLUMNS
            .into_iter()
            .chain([Self::Other])
            .find(|o| o.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Column index in [`Observation::COLUMNS`] (`None` for `Other`).
    pub fn column(self) -> Option<usize> {
        Self::COLUMNS.iter().position(|&o| o == self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for o in Observation::COLUMNS {
            assert_eq!(Observation::parse(o.name()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.name())
            );
        }
        assert_eq!(
            Observation::parse("pleural effusion"),
            Some(Observation::PleuralEffusion)
        );
        assert_eq!(Observation::parse("Effusion"), None);
    }
}

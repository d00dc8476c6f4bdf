//! What radlens measured, as findings a report can state: each with its assessment
//! (present, absent, uncertain when the sample interval straddles the threshold), its
//! side, the measurement and interval behind it, and the region it refers to.

use crate::analysis::Analysis;
use crate::label::{Laterality, Observation};
use crate::measure::Interval;
use crate::regions::{RegionBox, RegionMap, Side};
use serde::{Deserialize, Serialize};

/// CTR above which a PA film suggests cardiomegaly.
pub const CTR_THRESHOLD: f64 = 0.5;
/// Opacity extent (fraction of a lung) above which radlens calls an opacity present.
pub const OPACITY_THRESHOLD: f64 = 0.05;

/// How a measurement bears on a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assessment {
    Present,
    Absent,
    /// The sample interval straddles the threshold: the evidence cannot decide.
    Uncertain,
}

/// The measurement behind a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `ctr`, `opacity_extent_right`, `opacity_extent_left`.
    pub measurement: String,
    pub interval: Interval,
    pub threshold: f64,
    /// The region the finding refers to, with its box.
    pub region: String,
    pub region_box: Option<RegionBox>,
}

/// One measured finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredFinding {
    pub observation: Observation,
    pub assessment: Assessment,
    pub laterality: Option<Laterality>,
    pub evidence: Vec<Evidence>,
}

fn assess(i: &Interval, threshold: f64) -> Assessment {
    match i.side_of(threshold) {
        Some(true) => Assessment::Present,
        Some(false) => Assessment::Absent,
        None => Assessment::Uncertain,
    }
}

/// The findings radlens can measure on `a`: heart size (from the CTR) and lung opacity
/// per side (with the opacity model). Nothing for an implausible image.
pub fn measured_findings(a: &Analysis) -> Vec<MeasuredFinding> {
    let m = &a.measurements;
    if !m.plausibility.plausible {
        return Vec::new();
    }
    let regions = RegionMap::new(a);
    let mut out = Vec::new();
    if let Some(ctr) = m.ctr {
        out.push(MeasuredFinding {
            observation: Observation::Cardiomegaly,
            assessment: assess(&ctr, CTR_THRESHOLD),
            laterality: None,
            evidence: vec![Evidence {
                measurement: "ctr".into(),
                interval: ctr,
                threshold: CTR_THRESHOLD,
                region: "heart".into(),
                region_box: regions.heart().bbox(),
            }],
        });
    }
    if let Some(op) = m.opacity {
        let sides = [(Side::Right, op.right), (Side::Left, op.left)];
        let assessed: Vec<(Side, Interval, Assessment)> = sides
            .iter()
            .map(|&(s, i)| (s, i, assess(&i, OPACITY_THRESHOLD)))
            .collect();
        let present: Vec<Side> = assessed
            .iter()
            .filter(|x| x.2 == Assessment::Present)
            .map(|x| x.0)
            .collect();
        let assessment = if !present.is_empty() {
            Assessment::Present
        } else if assessed.iter().any(|x| x.2 == Assessment::Uncertain) {
            Assessment::Uncertain
        } else {
            Assessment::Absent
        };
        let laterality = match present.as_slice() {
            [Side::Right] => Some(Laterality::Right),
            [Side::Left] => Some(Laterality::Left),
            [_, _] => Some(Laterality::Bilateral),
            _ => None,
        };
        out.push(MeasuredFinding {
            observation: Observation::LungOpacity,
            assessment,
            laterality,
            evidence: assessed
                .iter()
                .map(|&(s, i, _)| {
                    let region = regions.opacity(Some(s));
                    Evidence {
                        measurement: format!("opacity_extent_{}", crate::regions::side_name(s)),
                        interval: i,
                        threshold: OPACITY_THRESHOLD,
                        region: format!("{} lung", crate::regions::side_name(s)),
                        region_box: region
                            .filter(|r| r.pixels() > 0)
                            .and_then(|r| r.bbox())
                            .or_else(|| regions.lung(s).bbox()),
                    }
                })
                .collect(),
        });
    }
    out
}

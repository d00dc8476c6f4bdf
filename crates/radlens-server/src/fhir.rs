//! The signed report as a FHIR R4 `DiagnosticReport` with its measurements as contained
//! `Observation`s (value, and the SSN-sample interval as two components), so that a
//! hospital system receives the numbers and their uncertainty, not only prose.

use crate::db::records::{SignedReport, Study};
use base64::Engine as _;
use radlens_report::measure::{AppliedMargins, Interval, Measurements};
use serde::{Deserialize, Serialize};

/// Code system of radlens' own measurement codes (no LOINC code exists for them).
pub const MEASUREMENT_SYSTEM: &str = "https://github.com/radlens/radlens/fhir/measurement";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    pub value: f64,
    pub unit: String,
    pub system: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub code: CodeableConcept,
    #[serde(rename = "valueQuantity")]
    pub value_quantity: Quantity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    pub id: String,
    pub status: String,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(rename = "effectiveDateTime", skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    #[serde(rename = "valueQuantity")]
    pub value_quantity: Quantity,
    pub method: CodeableConcept,
    pub component: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "contentType")]
    pub content_type: String,
    /// base64 of the UTF-8 text.
    pub data: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticReport {
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    pub id: String,
    pub status: String,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(rename = "effectiveDateTime", skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    pub issued: String,
    #[serde(rename = "resultsInterpreter")]
    pub results_interpreter: Vec<Reference>,
    pub contained: Vec<Observation>,
    pub result: Vec<Reference>,
    pub conclusion: String,
    #[serde(rename = "presentedForm")]
    pub presented_form: Vec<Attachment>,
}

fn concept(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding {
            system: system.into(),
            code: code.into(),
            display: Some(display.into()),
        }],
        text: Some(display.into()),
    }
}

fn quantity(value: f64, unit: &str) -> Quantity {
    Quantity {
        value,
        unit: unit.into(),
        system: "http://unitsofmeasure.org".into(),
        code: unit.into(),
    }
}

/// The measurements radlens reports, with their code, name and UCUM unit.
fn measured(m: &Measurements) -> Vec<(&'static str, &'static str, Interval, &'static str)> {
    let area_unit = if m.area_unit == "mm2" {
        "mm2"
    } else {
        "{pixel}"
    };
    let mut out = Vec::new();
    let mut push = |code, name, i: Option<Interval>, unit| {
        if let Some(i) = i {
            out.push((code, name, i, unit));
        }
    };
    push("ctr", "Cardiothoracic ratio", m.ctr, "1");
    push(
        "right-lung-area",
        "Right lung projected area",
        m.right_lung_area,
        area_unit,
    );
    push(
        "left-lung-area",
        "Left lung projected area",
        m.left_lung_area,
        area_unit,
    );
    push(
        "lung-area-ratio",
        "Left to right lung area ratio",
        m.lung_ratio,
        "1",
    );
    if let Some(o) = m.opacity {
        push(
            "opacity-extent-right",
            "Opacity extent, right lung",
            Some(o.right),
            "1",
        );
        push(
            "opacity-extent-left",
            "Opacity extent, left lung",
            Some(o.left),
            "1",
        );
    }
    out
}

/// How the intervals were made, as the report's method says it: a receiving system must
/// not read a raw sample interval as a calibrated one, or the reverse.
fn interval_method(samples: usize, conformal: Option<&AppliedMargins>) -> String {
    let raw = format!("mean-mask value with the central 95% interval over {samples} SSN samples");
    let Some(c) = conformal else {
        return format!("{raw} (not calibrated: it covers the reference less often than 95%)");
    };
    let widened: Vec<String> = [("CTR", c.ctr), ("left/right lung-area ratio", c.lung_ratio)]
        .into_iter()
        .filter_map(|(name, margin)| margin.map(|m| format!("{name} +/-{m:.4}")))
        .collect();
    format!(
        "{raw}; widened by split-conformal margins for a nominal {:.0}% coverage: {}",
        100.0 * c.coverage,
        widened.join(", ")
    )
}

/// The signed report of `study` as a DiagnosticReport; `version` > 1 is an amendment.
pub fn diagnostic_report(
    study: &Study,
    signed: &SignedReport,
    m: &Measurements,
    model_version: &str,
) -> DiagnosticReport {
    let subject = Reference {
        reference: None,
        identifier: Some(Identifier {
            value: study.patient_key.clone(),
        }),
        display: None,
    };
    let method = CodeableConcept {
        coding: vec![],
        text: Some(format!(
            "radlens {model_version}: {}",
            interval_method(m.samples.samples, m.conformal.as_ref())
        )),
    };
    let contained: Vec<Observation> = measured(m)
        .into_iter()
        .map(|(code, name, i, unit)| Observation {
            resource_type: "Observation".into(),
            id: code.into(),
            status: "final".into(),
            category: vec![concept(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "imaging",
                "Imaging",
            )],
            code: concept(MEASUREMENT_SYSTEM, code, name),
            subject: subject.clone(),
            effective_date_time: study.study_date.clone(),
            value_quantity: quantity(i.value, unit),
            method: method.clone(),
            component: vec![
                Component {
                    code: concept(
                        MEASUREMENT_SYSTEM,
                        "interval-low",
                        "95% interval, lower end",
                    ),
                    value_quantity: quantity(i.low, unit),
                },
                Component {
                    code: concept(
                        MEASUREMENT_SYSTEM,
                        "interval-high",
                        "95% interval, upper end",
                    ),
                    value_quantity: quantity(i.high, unit),
                },
            ],
        })
        .collect();
    let text = format!(
        "FINDINGS: {}\n\nIMPRESSION: {}\n",
        signed.findings, signed.impression
    );
    DiagnosticReport {
        resource_type: "DiagnosticReport".into(),
        id: format!("radlens-study-{}-report-{}", study.id, signed.id),
        status: if signed.version > 1 {
            "amended"
        } else {
            "final"
        }
        .into(),
        category: vec![concept(
            "http://terminology.hl7.org/CodeSystem/v2-0074",
            "RAD",
            "Radiology",
        )],
        code: concept("http://loinc.org", "18748-4", "Diagnostic imaging study"),
        subject,
        effective_date_time: study.study_date.clone(),
        issued: signed.signed_at.clone(),
        results_interpreter: vec![Reference {
            reference: None,
            identifier: None,
            display: Some(signed.author.clone()),
        }],
        result: contained
            .iter()
            .map(|o| Reference {
                reference: Some(format!("#{}", o.id)),
                identifier: None,
                display: None,
            })
            .collect(),
        contained,
        conclusion: signed.impression.clone(),
        presented_form: vec![Attachment {
            content_type: "text/plain; charset=utf-8".into(),
            data: base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            title: "Signed report".into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_says_whether_the_intervals_are_calibrated() {
        let raw = interval_method(16, None);
        assert!(raw.contains("over 16 SSN samples") && raw.contains("not calibrated"));
        let margins = AppliedMargins {
            coverage: 0.9,
            ctr: Some(0.0262),
            lung_ratio: None,
        };
        assert_eq!(
            interval_method(32, Some(&margins)),
            "mean-mask value with the central 95% interval over 32 SSN samples; widened by \
             split-conformal margins for a nominal 90% coverage: CTR +/-0.0262"
        );
    }
}

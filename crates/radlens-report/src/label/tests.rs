//! Hand-written sentences, one or more per rule kind.

use super::*;

fn labeler() -> Labeler {
    Labeler::builtin().unwrap()
}

/// The status of `o`'s mentions in `text` (as a report body), in order.
fn statuses(text: &str, o: Observation) -> Vec<Status> {
    labeler()
        .mentions(text)
        .into_iter()
        .filter(|m| m.observation == o)
        .map(|m| m.status)
        .collect()
}

use Observation::*;
use Status::*;

#[test]
fn plain_mentions_are_positive() {
    assert_eq!(statuses("Cardiomegaly.", Cardiomegaly), [Positive]);
    assert_eq!(statuses("The heart is enlarged.", Cardiomegaly), [Positive]);
    assert_eq!(
        statuses("Small left pleural effusion.", PleuralEffusion),
        [Positive]
    );
    assert_eq!(statuses("Bibasilar atelectasis.", Atelectasis), [Positive]);
    assert_eq!(
        statuses("Healed right rib fractures.", Fracture),
        [Positive]
    );
    assert_eq!(
        statuses("Right apical pneumothorax.", Pneumothorax),
        [Positive]
    );
}

#[test]
fn forward_negation_covers_a_list() {
    let t = "No pneumothorax, pleural effusion, or focal airspace consolidation.";
    assert_eq!(statuses(t, Pneumothorax), [Negative]);
    assert_eq!(statuses(t, PleuralEffusion), [Negative]);
    assert_eq!(statuses(t, Consolidation), [Negative]);
    assert_eq!(
        statuses("There is no evidence of pneumothorax.", Pneumothorax),
        [Negative]
    );
    assert_eq!(
        statuses("Lungs clear without effusion.", PleuralEffusion),
        [Negative]
    );
}

#[test]
fn backward_negation_after_the_mention() {
    assert_eq!(statuses("Heart size is normal.", Cardiomegaly), [Negative]);
    assert_eq!(
        statuses(
            "The cardiac silhouette is within normal limits.",
            Cardiomegaly
        ),
        [Negative]
    );
    assert_eq!(
        statuses("The effusion has resolved.", PleuralEffusion),
        [Negative]
    );
    assert_eq!(statuses("Normal heart size.", Cardiomegaly), [Negative]);
}

#[test]
fn uncertainty_and_its_precedence() {
    assert_eq!(
        statuses("Possible left lower lobe pneumonia.", Pneumonia),
        [Uncertain]
    );
    assert_eq!(
        statuses("Pneumonia cannot be excluded.", Pneumonia),
        [Uncertain]
    );
    // IU X-ray's curators tag "upper limits of normal" hearts as normal, and the rules
    // follow them (CheXpert's rules would say uncertain).
    assert_eq!(
        statuses("Heart size is upper limits of normal.", Cardiomegaly),
        [Negative]
    );
    assert_eq!(
        statuses("Borderline cardiomegaly.", Cardiomegaly),
        [Uncertain]
    );
    let t = "Atelectasis versus consolidation.";
    assert_eq!(statuses(t, Atelectasis), [Uncertain]);
    assert_eq!(statuses(t, Consolidation), [Uncertain]);
    // a pseudo-trigger lets the negation govern: "no X to suggest Y"
    assert_eq!(
        statuses(
            "There is no focal air space opacity to suggest a pneumonia.",
            Pneumonia
        ),
        [Negative]
    );
}

#[test]
fn a_trigger_of_another_category_and_terminators_end_a_scope() {
    let t = "Possible small effusion, no pneumothorax.";
    assert_eq!(statuses(t, PleuralEffusion), [Uncertain]);
    assert_eq!(statuses(t, Pneumothorax), [Negative]);
    let t = "No pneumothorax but there is a small left effusion.";
    assert_eq!(statuses(t, Pneumothorax), [Negative]);
    assert_eq!(statuses(t, PleuralEffusion), [Positive]);
    // beyond the word window the negation no longer reaches
    let t = "No acute bony abnormality is seen in the thoracic spine on this study today with atelectasis.";
    assert_eq!(statuses(t, Atelectasis), [Positive]);
}

#[test]
fn historical_mentions_do_not_set_the_label() {
    let l = labeler();
    let (labels, m) = l.label("History of pneumonia. Lungs are clear.");
    assert!(m.iter().any(|m| m.observation == Pneumonia && m.historical));
    assert_eq!(labels.get(Pneumonia), None);
    assert_eq!(labels.get(NoFinding), Some(Positive));
}

#[test]
fn modifiers_laterality_severity_change() {
    let m = labeler()
        .mentions("Small left effusion and large right pneumothorax, increased since prior.");
    let eff = m.iter().find(|m| m.observation == PleuralEffusion).unwrap();
    assert_eq!(eff.laterality, Some(Laterality::Left));
    assert_eq!(eff.severity.as_deref(), Some("mild"));
    let ptx = m.iter().find(|m| m.observation == Pneumothorax).unwrap();
    assert_eq!(ptx.laterality, Some(Laterality::Right));
    assert_eq!(ptx.severity.as_deref(), Some("severe"));
    let m = labeler().mentions("Bilateral effusions are unchanged.");
    assert_eq!(m[0].laterality, Some(Laterality::Bilateral));
    assert_eq!(m[0].change.as_deref(), Some("unchanged"));
    let m = labeler().mentions("New right lower lobe consolidation.");
    assert_eq!(m[0].change.as_deref(), Some("new"));
}

#[test]
fn report_labels_follow_chexpert_aggregation() {
    let (labels, _) = labeler().label(
        "FINDINGS: Mild cardiomegaly. No effusion. Possible atelectasis. No pneumothorax.\nIMPRESSION: Cardiomegaly.",
    );
    assert_eq!(labels.get(Cardiomegaly), Some(Positive));
    assert_eq!(labels.get(PleuralEffusion), Some(Negative));
    assert_eq!(labels.get(Atelectasis), Some(Uncertain));
    assert_eq!(labels.get(Edema), None);
    assert_eq!(labels.get(NoFinding), None);
    let cells: Vec<String> = labels.cells().collect();
    assert_eq!(cells[2], "1");
    assert_eq!(cells[8], "-1");
    assert_eq!(cells[10], "0");
    assert_eq!(cells[5], "");
}

#[test]
fn no_finding_ignores_devices_and_negatives_but_not_other_abnormalities() {
    let l = labeler();
    let nf = |t: &str| l.label(t).0.get(NoFinding);
    assert_eq!(
        nf("No effusion or pneumothorax. Right chest port in place."),
        Some(Positive)
    );
    assert_eq!(nf("Degenerative changes of the thoracic spine."), None);
    assert_eq!(nf("Mild cardiomegaly."), None);
    // abnormalities outside the columns that the curators index (training part)
    for t in [
        "Low lung volumes. Lungs are clear.",
        "Lung volumes are low. No focal infiltrates.",
        "Pulmonary hypoinflation with bronchovascular crowding.",
        "Mild dextroscoliosis. Lungs are clear.",
        "Scattered thoracic spine spurring.",
        "Mild spine curvature again noted.",
    ] {
        assert_eq!(nf(t), None, "{t}");
    }
    // "prior granulomatous disease" is a present sequela, not history; a prior
    // granulomatous infection stays history
    assert_eq!(
        statuses("Evidence of prior granulomatous disease.", Granuloma),
        [Positive]
    );
    assert_eq!(nf("Evidence of prior granulomatous disease."), None);
    assert!(l
        .mentions("History of prior granulomatous infection.")
        .iter()
        .all(|m| m.historical));
}

#[test]
fn indication_and_comparison_are_not_labelled() {
    let m =
        labeler().mentions("INDICATION: Pneumonia?\nCOMPARISON: None.\nFINDINGS: Lungs are clear.");
    assert!(m.iter().all(|m| m.observation != Pneumonia), "{m:?}");
}

#[test]
fn offsets_are_character_offsets_into_the_report() {
    let text = "FINDINGS: Héart normal. Small effusion.";
    let m = labeler().mentions(text);
    let e = m.iter().find(|m| m.observation == PleuralEffusion).unwrap();
    let chars: Vec<char> = text.chars().collect();
    assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
    assert_eq!(e.text, "effusion");
}

#[test]
fn keyword_baseline_ignores_context() {
    let l = labeler();
    let k = l.keyword_labels("No pleural effusion.");
    assert_eq!(k.get(PleuralEffusion), Some(Positive));
    assert_eq!(
        l.label("No pleural effusion.").0.get(PleuralEffusion),
        Some(Negative)
    );
}

#[test]
fn bad_rule_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("observations.txt"), "[Heart Thing]\nfoo\n").unwrap();
    std::fs::write(dir.path().join("context.txt"), CONTEXT).unwrap();
    std::fs::write(dir.path().join("modifiers.txt"), MODIFIERS).unwrap();
    let e = Labeler::load(Some(dir.path())).unwrap_err().to_string();
    assert!(
        e.contains("observations.txt") && e.contains("Heart Thing"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("context.txt")).unwrap();
    std::fs::write(dir.path().join("observations.txt"), OBSERVATIONS).unwrap();
    let e = Labeler::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("context.txt"), "{e}");
}

#[test]
fn a_fractures_age_is_neither_doubt_nor_history() {
    let labels = |text: &str| labeler().label(&format!("FINDINGS: {text}")).0;
    for text in [
        "Age-indeterminate fracture of the left 7th rib.",
        "Fracture of the right clavicle of indeterminate age.",
        "Right 6th rib fracture of uncertain age.",
        "Deformity of the left ribs from previous fractures.",
        "Status post remote left humerus fracture.",
        "Old healed right rib fractures.",
    ] {
        assert_eq!(labels(text).get(Fracture), Some(Positive), "{text}");
    }
    // doubt about the fracture itself still counts, and so does a real history
    assert_eq!(
        statuses(
            "Cortical irregularity may represent an age-indeterminate fracture.",
            Fracture
        ),
        [Uncertain]
    );
    assert_eq!(
        statuses("Indeterminate nodule in the right upper lobe.", Nodule),
        [Uncertain]
    );
    let m = labeler().mentions("Correlate with history of rib fracture.");
    assert!(!m.is_empty() && m.iter().all(|m| m.historical), "{m:?}");
}

#[test]
fn a_broken_device_is_no_bone_fracture() {
    for text in [
        "Central venous catheter fracture at the clavicle.",
        "The lateral most screw is fractured.",
        "Fracture of the lateral most fixation screw.",
    ] {
        assert_eq!(statuses(text, Fracture), [], "{text}");
    }
    assert_eq!(
        statuses("Sternotomy wires and a right rib fracture.", Fracture),
        [Positive]
    );
}

//! The IU X-ray reader checked against the real public file in `../shared/data`.

use radlens_report::{CorpusSpec, ReportPart, ReportSplit};
use std::path::PathBuf;

fn iu_xray() -> CorpusSpec {
    let shared = std::env::var_os("RADLENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    CorpusSpec {
        dir: shared.join("data").join("iu-xray"),
    }
}

#[test]
fn iu_xray_reports_match_the_csv() {
    let reports = iu_xray().read().unwrap();
    // 3,451 rows, 21 of which have neither findings nor impression.
    assert_eq!(reports.len(), 3430);
    assert_eq!(reports[0].uid, "1");
    assert!(reports[0]
        .text()
        .starts_with("The cardiac silhouette and mediastinum size"));
    assert!(reports[0].text().ends_with("Normal chest x-XXXX."));
    // Report 3 has no findings: its text is the impression alone.
    let r3 = reports.iter().find(|r| r.uid == "3").unwrap();
    assert!(r3.text().starts_with("No displaced rib fractures"));

    let split = ReportSplit {
        heldout_fraction: 0.1,
        seed: 0,
        deduplicate: false,
    };
    let held = split.select(reports.clone(), ReportPart::Heldout).unwrap();
    assert_eq!(held.len(), 343); // round(343.0)

    // 2,772 distinct normalised texts (2,774 before lower-casing); 277 (round(277.2)) are held out.
    let dedup = ReportSplit {
        deduplicate: true,
        ..split
    };
    assert_eq!(
        dedup
            .select(reports.clone(), ReportPart::All)
            .unwrap()
            .len(),
        2772
    );
    let held = dedup.select(reports.clone(), ReportPart::Heldout).unwrap();
    let train = dedup.select(reports, ReportPart::Train).unwrap();
    assert_eq!((train.len(), held.len()), (2495, 277));
}

//! The JSON API against a real server on loopback: upload, background analysis, cached
//! results, draft editing with history, signing, FHIR export, DICOM tags, review and
//! search, a restart on the same database, and hostile requests.

mod common;

use base64::Engine as _;
use common::*;
use radlens_server::api::{Created, Health, Signed};
use radlens_server::db::records::{
    EditAction, ImageFormat, JobState, SentenceEdit, SentenceStatus, Study,
};
use radlens_server::error::ErrorBody;
use radlens_server::fhir::DiagnosticReport;
use radlens_server::results::{ReportView, SentenceView, StudyView};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::json;

fn get<T: serde::de::DeserializeOwned>(c: &Client, s: &radlens_server::Running, path: &str) -> T {
    let r = c.get(s.url(path)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().unwrap()
}

/// The status and error message of a refused request.
fn refused(r: reqwest::blocking::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: ErrorBody = r
        .json()
        .unwrap_or_else(|e| panic!("{status}: not a JSON error: {e}"));
    (status, body.error)
}

fn upload_film(c: &Client, s: &radlens_server::Running, patient: &str, date: &str) -> Created {
    let (png, _) = small_film(256);
    let r = upload(
        c,
        s,
        png,
        "JPCLN001-small.png",
        &[
            ("patient_id", patient),
            ("study_date", date),
            ("view", "pa"),
        ],
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().unwrap()
}

#[test]
fn upload_analyse_edit_sign_export_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (study_id, version, edited_text) = {
        let s = start(dir.path());
        let c = login(&s, RADIOLOGIST);
        let h: Health = get(&c, &s, "/healthz");
        assert_eq!(h.status, "ok");
        assert!(
            h.model_version.starts_with("jsrt-ssn@"),
            "{}",
            h.model_version
        );

        let created = upload_film(&c, &s, "P-1", "2020-03-01");
        let job = wait_job(&c, &s, created.job.id);
        assert_eq!(job.state, JobState::Done, "{job:?}");
        assert_eq!(job.progress, 1.0);

        let v: StudyView = get(&c, &s, &format!("/api/studies/{}", created.id));
        assert_eq!(v.study.patient_key, "P-1");
        assert_eq!(v.study.study_date.as_deref(), Some("2020-03-01"));
        assert_eq!(v.study.view.as_deref(), Some("PA"));
        assert_eq!((v.study.width, v.study.height), (256, 256));
        let a = v.analysis.expect("analysis after the job");
        assert_eq!(a.model_version, h.model_version);
        let ctr = a.measurements.ctr.expect("a CTR on a normal PA film");
        assert!(ctr.low <= ctr.value && ctr.value <= ctr.high);
        // the drawn lines are the widths the CTR divides
        let l = a.ctr_lines.expect("CTR lines");
        assert!((l.heart.length() / l.thorax.length() - ctr.value).abs() < 1e-9);

        // display pixels: the uploaded 8-bit values scaled to 16 bits (v * 257)
        let (_, small) = small_film(256);
        let px = c
            .get(s.url(&format!("/api/studies/{}/pixels", created.id)))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(px.len(), 256 * 256 * 2);
        // the pixels carry an entity tag; a client holding them gets 304 without a body
        let first = c
            .get(s.url(&format!("/api/studies/{}/pixels", created.id)))
            .send()
            .unwrap();
        let etag = first.headers()["etag"].clone();
        assert_eq!(first.bytes().unwrap(), px);
        let again = c
            .get(s.url(&format!("/api/studies/{}/pixels", created.id)))
            .header("if-none-match", etag.clone())
            .send()
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()["etag"], etag);
        assert!(again.bytes().unwrap().is_empty());
        for i in [0usize, 1000, 256 * 128 + 128, 65535] {
            let v = u16::from_le_bytes([px[2 * i], px[2 * i + 1]]);
            assert_eq!(v, u16::from(small.as_raw()[i]) * 257, "pixel {i}");
        }
        // every overlay the study lists is a PNG on the image grid, and not empty
        assert!(a.overlays.iter().any(|o| o.name == "uncertainty"));
        assert_eq!(
            a.overlays
                .iter()
                .filter(|o| o.name.starts_with("sample-"))
                .count(),
            4
        );
        for o in &a.overlays {
            let r = c.get(s.url(&o.url)).send().unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", o.url);
            let img = image::load_from_memory(&r.bytes().unwrap())
                .unwrap()
                .into_rgba8();
            assert_eq!(img.dimensions(), (256, 256), "{}", o.name);
            if o.name != "uncertainty" {
                assert!(img.pixels().any(|p| p[3] > 0), "{} is empty", o.name);
            }
        }

        // the draft: AI sentences, all pending, at least one with an evidence box
        let d: ReportView = get(&c, &s, &format!("/api/studies/{}/draft", created.id));
        assert!(d.ai_generated && !d.sentences.is_empty());
        assert!(d
            .sentences
            .iter()
            .all(|x| x.row.status == SentenceStatus::Pending));
        assert!(d
            .sentences
            .iter()
            .any(|x| x.evidence.iter().any(|e| e.region_box.is_some())));
        let first = &d.sentences[0];
        let url = format!("/api/studies/{}/sentences/{}", created.id, first.row.id);
        let edit = |action: &str, text: Option<&str>| -> SentenceView {
            let r = c
                .post(s.url(&url))
                .json(&json!({"action": action, "text": text}))
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{action}");
            r.json().unwrap()
        };
        let e = edit(
            "edit",
            Some("Heart size within normal limits on this PA film."),
        );
        assert_eq!(e.row.status, SentenceStatus::Edited);
        assert_eq!(e.row.ai_text, first.row.ai_text, "the AI text is kept");
        let e = edit("reset", None);
        assert_eq!(
            (e.row.status, e.row.text.as_str()),
            (SentenceStatus::Pending, first.row.ai_text.as_str())
        );
        let edited_text = "Heart size within normal limits on this PA film (edited).";
        edit("edit", Some(edited_text));
        if let Some(second) = d.sentences.get(1) {
            let r = c
                .post(s.url(&format!(
                    "/api/studies/{}/sentences/{}",
                    created.id, second.row.id
                )))
                .json(&json!({"action": "reject"}))
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let history: Vec<SentenceEdit> = get(&c, &s, &format!("/api/studies/{}/edits", created.id));
        let actions: Vec<EditAction> = history
            .iter()
            .filter(|h| h.sentence_id == first.row.id)
            .map(|h| h.action)
            .collect();
        assert_eq!(
            actions,
            [EditAction::Edit, EditAction::Reset, EditAction::Edit]
        );
        assert!(history.iter().all(|h| h.author == RADIOLOGIST));

        // FHIR needs a signed report
        let fhir_url = s.url(&format!("/api/studies/{}/fhir", created.id));
        let (st, msg) = refused(c.get(&fhir_url).send().unwrap());
        assert_eq!(st, StatusCode::CONFLICT, "{msg}");
        let signed: Signed = c
            .post(s.url(&format!("/api/studies/{}/sign", created.id)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            signed.signed.findings.contains(edited_text),
            "{:?}",
            signed.signed
        );
        assert_eq!(signed.signed.version, 1);
        let r = c.get(&fhir_url).send().unwrap();
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
        let fr: DiagnosticReport = r.json().unwrap();
        assert_eq!(
            (fr.resource_type.as_str(), fr.status.as_str()),
            ("DiagnosticReport", "final")
        );
        assert_eq!(fr.subject.identifier.as_ref().unwrap().value, "P-1");
        assert_eq!(fr.effective_date_time.as_deref(), Some("2020-03-01"));
        for r in &fr.result {
            let id = r.reference.as_deref().unwrap().strip_prefix('#').unwrap();
            assert!(
                fr.contained.iter().any(|o| o.id == id),
                "dangling reference #{id}"
            );
        }
        let obs = fr
            .contained
            .iter()
            .find(|o| o.id == "ctr")
            .expect("CTR observation");
        assert_eq!(obs.value_quantity.value, ctr.value);
        assert_eq!(obs.component[0].value_quantity.value, ctr.low);
        assert_eq!(obs.component[1].value_quantity.value, ctr.high);
        let text = base64::engine::general_purpose::STANDARD
            .decode(&fr.presented_form[0].data)
            .unwrap();
        assert!(String::from_utf8(text).unwrap().contains(edited_text));
        // a second signature, by another radiologist, is an amendment
        login(&s, RADIOLOGIST_2)
            .post(s.url(&format!("/api/studies/{}/sign", created.id)))
            .send()
            .unwrap();
        let fr: DiagnosticReport = c.get(&fhir_url).send().unwrap().json().unwrap();
        assert_eq!(fr.status, "amended");
        (created.id, h.model_version, edited_text)
    };

    // a restarted server on the same database has everything, and answers from its cache
    let s = start(dir.path());
    let c = login(&s, RADIOLOGIST);
    let r = c
        .post(s.url(&format!("/api/studies/{study_id}/analyse")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job: radlens_server::db::records::Job = r.json().unwrap();
    assert_eq!(
        (job.state, job.stage.as_str(), job.model_version.as_str()),
        (JobState::Done, "cached result", version.as_str())
    );
    let d: ReportView = get(&c, &s, &format!("/api/studies/{study_id}/draft"));
    assert_eq!(d.sentences[0].row.text, edited_text);
    assert_eq!(d.signed.unwrap().author, RADIOLOGIST_2);
}

/// A 16-bit DICOM film with patient, date and view tags.
fn write_dicom(path: &std::path::Path, patient: &str, date: &str, view: &str) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let (_, small) = small_film(128);
    let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
    let obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.1.1"),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6"),
        DataElement::new(tags::PATIENT_ID, VR::LO, patient),
        DataElement::new(tags::STUDY_DATE, VR::DA, date),
        DataElement::new(tags::VIEW_POSITION, VR::CS, view),
        DataElement::new(tags::MODALITY, VR::CS, "DX"),
        us(tags::SAMPLES_PER_PIXEL, 1),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, 128),
        us(tags::COLUMNS, 128),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(small.as_raw().iter().map(|v| u16::from(*v) * 16).collect()),
        ),
    ]);
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1.1")
        .media_storage_sop_instance_uid("1.2.3.4.5.6");
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

#[test]
fn dicom_tags_name_patient_date_and_view() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = login(&s, RADIOLOGIST);
    let dcm = dir.path().join("film.dcm");
    write_dicom(&dcm, "DCM-7", "20200105", "AP");
    let bytes = std::fs::read(&dcm).unwrap();
    let r = upload(&c, &s, bytes.clone(), "film.dcm", &[]);
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Created = r.json().unwrap();
    let st: Study = get::<StudyView>(&c, &s, &format!("/api/studies/{}", created.id)).study;
    assert_eq!(st.format, ImageFormat::Dicom);
    assert_eq!(st.patient_key, "DCM-7");
    assert_eq!(st.study_date.as_deref(), Some("2020-01-05"));
    assert_eq!(st.view.as_deref(), Some("AP"));
    assert_eq!((st.width, st.height), (128, 128));
    // a form value that contradicts the file is refused, not silently preferred
    let (status, msg) = refused(upload(
        &c,
        &s,
        bytes,
        "film.dcm",
        &[("patient_id", "OTHER")],
    ));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(msg.contains("DCM-7") && msg.contains("OTHER"), "{msg}");
    assert_eq!(wait_job(&c, &s, created.job.id).state, JobState::Done);
}

#[test]
fn review_flags_and_search_regions_come_from_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = login(&s, RADIOLOGIST);
    let created = upload_film(&c, &s, "P-2", "2021-06-01");
    assert_eq!(wait_job(&c, &s, created.job.id).state, JobState::Done);
    let v: StudyView = get(&c, &s, &format!("/api/studies/{}", created.id));
    let a = v.analysis.unwrap();
    let ctr = a.measurements.ctr.unwrap();
    // a report that states the opposite of the measured heart size
    let claim = match ctr.side_of(0.5) {
        Some(true) => "Heart size is normal.",
        _ => "The heart is enlarged. Cardiomegaly.",
    };
    let r = c
        .post(s.url(&format!("/api/studies/{}/review", created.id)))
        .json(&json!({"text": format!("FINDINGS: {claim} Lungs are clear.")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let review: radlens_report::review::Review = r.json().unwrap();
    let flag = review
        .flags
        .iter()
        .find(|f| f.observation == radlens_report::Observation::Cardiomegaly)
        .unwrap_or_else(|| {
            panic!(
                "no heart-size flag for '{claim}' at CTR {ctr:?}: {:?}",
                review.flags
            )
        });
    let expected = if ctr.side_of(0.5).is_none() {
        radlens_report::review::FlagKind::Uncertain
    } else {
        radlens_report::review::FlagKind::Contradiction
    };
    assert_eq!(flag.kind, expected, "{flag:?}");
    assert!(
        flag.span
            .as_ref()
            .is_some_and(|sp| claim.contains(sp.sentence.trim())),
        "{flag:?}"
    );

    // the flag's span is counted in characters within its sentence ('ä' is two bytes)
    let sentence = match ctr.side_of(0.5) {
        Some(true) => "Since the März study, heart size is normal.",
        _ => "Since the März study, the heart is enlarged.",
    };
    let r = c
        .post(s.url(&format!("/api/studies/{}/review", created.id)))
        .json(&json!({"text": format!("  FINDINGS: Lungs are clear. {sentence}")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let review: radlens_report::review::Review = r.json().unwrap();
    let sp = review
        .flags
        .iter()
        .find_map(|f| f.span.as_ref().filter(|sp| sp.sentence == sentence))
        .unwrap_or_else(|| panic!("no flag in '{sentence}': {:?}", review.flags));
    // the text is trimmed before review: "FINDINGS: Lungs are clear. " is 27 characters
    assert_eq!(sp.sentence_start, 27, "{sp:?}");
    let heart = sentence.to_lowercase().find("heart").unwrap() - 1; // one 2-byte 'ä' before
    assert_eq!(sp.start, heart, "{sp:?}");
    let marked: String = sentence
        .chars()
        .skip(sp.start)
        .take(sp.end - sp.start)
        .collect();
    assert_eq!(marked, sp.mention);
    assert!(marked.to_lowercase().starts_with("heart"), "{sp:?}");

    // "heart" is the heart's box: the same columns as the CTR's heart line
    let r: radlens_report::search::SearchResult = get(
        &c,
        &s,
        &format!(
            "/api/studies/{}/search?q=where%20is%20the%20heart",
            created.id
        ),
    );
    assert!(r.found && r.ai_generated);
    let b = r.region_box.unwrap().pixels;
    let l = a.ctr_lines.unwrap();
    assert_eq!(
        (b.x_min as f64, b.x_max as f64 + 1.0),
        (l.heart.x0, l.heart.x1)
    );
}

#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = login(&s, RADIOLOGIST);
    let created = upload_film(&c, &s, "P-3", "2021-01-01");
    assert_eq!(wait_job(&c, &s, created.job.id).state, JobState::Done);
    let (png, _) = small_film(256);
    let before: ReportView = get(&c, &s, &format!("/api/studies/{}/draft", created.id));

    let cases: Vec<(reqwest::blocking::Response, StatusCode, &str)> = vec![
        (
            upload(
                &c,
                &s,
                b"GIF89a not an x-ray".to_vec(),
                "x.gif",
                &[("patient_id", "P")],
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "x.gif",
        ),
        (
            upload(
                &c,
                &s,
                png[..200].to_vec(),
                "cut.png",
                &[("patient_id", "P")],
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cut.png",
        ),
        (
            upload(
                &c,
                &s,
                vec![0x89; MAX_UPLOAD + 1024],
                "big.png",
                &[("patient_id", "P")],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            upload(&c, &s, png.clone(), "../../etc/passwd", &[]),
            StatusCode::BAD_REQUEST,
            "patient id is required",
        ),
        (
            upload(
                &c,
                &s,
                png.clone(),
                "a.png",
                &[("patient_id", "P"), ("study_date", "2021-02-30")],
            ),
            StatusCode::BAD_REQUEST,
            "study date",
        ),
        (
            upload(&c, &s, png.clone(), "a.png", &[("patient_id", "P\u{0}")]),
            StatusCode::BAD_REQUEST,
            "patient id",
        ),
        (
            upload(
                &c,
                &s,
                png.clone(),
                "a.png",
                &[("patient_id", "P"), ("path", "/etc")],
            ),
            StatusCode::BAD_REQUEST,
            "unknown upload field",
        ),
        (
            c.post(s.url("/api/studies"))
                .json(&json!({"file": "x"}))
                .send()
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "upload",
        ),
        (
            c.get(s.url("/api/studies/999")).send().unwrap(),
            StatusCode::NOT_FOUND,
            "no study 999",
        ),
        (
            c.get(s.url("/api/studies/..%2F..%2Fetc%2Fpasswd"))
                .send()
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "not a positive integer",
        ),
        (
            c.get(s.url("/api/studies/1%20OR%201=1/draft"))
                .send()
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "not a positive integer",
        ),
        (
            c.get(s.url(&format!(
                "/api/studies/{}/overlays/..%2F..%2FCargo.toml",
                created.id
            )))
            .send()
            .unwrap(),
            StatusCode::NOT_FOUND,
            "no overlay",
        ),
        (
            c.get(s.url(&format!("/api/studies/{}/overlays/sample-99", created.id)))
                .send()
                .unwrap(),
            StatusCode::NOT_FOUND,
            "no overlay",
        ),
        (
            c.get(s.url("/assets/..%2F..%2FCargo.toml")).send().unwrap(),
            StatusCode::NOT_FOUND,
            "no asset",
        ),
        (
            c.get(s.url("/api/nothing")).send().unwrap(),
            StatusCode::NOT_FOUND,
            "no route",
        ),
        (
            c.post(s.url(&format!(
                "/api/studies/{}/sentences/{}",
                created.id, before.sentences[0].row.id
            )))
            .body("{not json")
            .header("content-type", "application/json")
            .send()
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "request body",
        ),
        (
            c.post(s.url(&format!(
                "/api/studies/{}/sentences/{}",
                created.id, before.sentences[0].row.id
            )))
            .json(&json!({"text": "no action"}))
            .send()
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "action",
        ),
        (
            c.post(s.url(&format!(
                "/api/studies/{}/sentences/{}",
                created.id, before.sentences[0].row.id
            )))
            .json(&json!({"action": "delete"}))
            .send()
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "action",
        ),
        (
            c.post(s.url(&format!(
                "/api/studies/{}/sentences/{}",
                created.id, before.sentences[0].row.id
            )))
            .json(&json!({"action": "edit", "text": "x".repeat(5000)}))
            .send()
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "sentence text",
        ),
        (
            c.post(s.url(&format!("/api/studies/{}/sentences/999999", created.id)))
                .json(&json!({"action": "accept"}))
                .send()
                .unwrap(),
            StatusCode::NOT_FOUND,
            "no sentence",
        ),
        (
            c.get(s.url(&format!("/api/studies/{}/search?q=", created.id)))
                .send()
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "search query",
        ),
        (
            c.get(s.url("/api/jobs/0")).send().unwrap(),
            StatusCode::BAD_REQUEST,
            "job id",
        ),
    ];
    for (r, status, needle) in cases {
        let url = r.url().to_string();
        let (st, msg) = refused(r);
        assert_eq!(st, status, "{url}: {msg}");
        assert!(
            msg.contains(needle),
            "{url}: '{msg}' does not mention '{needle}'"
        );
    }
    // SQL metacharacters in a search are text, not SQL
    let r = c
        .get(s.url(&format!("/api/studies/{}/search", created.id)))
        .query(&[("q", "'; DROP TABLE studies; --")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // nothing changed: one study, the same draft, no edit history, no file left behind
    let studies: Vec<Study> = get(&c, &s, "/api/studies");
    assert_eq!(studies.len(), 1);
    let after: ReportView = get(&c, &s, &format!("/api/studies/{}/draft", created.id));
    assert_eq!(after, before);
    let edits: Vec<SentenceEdit> = get(&c, &s, &format!("/api/studies/{}/edits", created.id));
    assert!(edits.is_empty());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("data/studies"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let h: Health = get(&c, &s, "/healthz");
    assert_eq!(h.status, "ok");
}

#[test]
fn a_later_study_is_compared_with_the_prior() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = login(&s, RADIOLOGIST);
    // the same film twice, ten days apart: same model, same seed, so nothing changed
    let first = upload_film(&c, &s, "P-4", "2020-01-01");
    assert_eq!(wait_job(&c, &s, first.job.id).state, JobState::Done);
    let second = upload_film(&c, &s, "P-4", "2020-01-11");
    assert_eq!(second.patient_id, first.patient_id);
    assert_eq!(wait_job(&c, &s, second.job.id).state, JobState::Done);
    let ctr0 = get::<StudyView>(&c, &s, &format!("/api/studies/{}", first.id))
        .analysis
        .unwrap()
        .measurements
        .ctr
        .unwrap();

    let h: radlens_server::timeline::PatientHistory = get(
        &c,
        &s,
        &format!("/api/patients/{}/history", first.patient_id),
    );
    assert_eq!(h.patient.patient_key, "P-4");
    let ids: Vec<i64> = h.studies.iter().map(|t| t.study.id).collect();
    assert_eq!(ids, [first.id, second.id]);
    assert_eq!(h.intervals.len(), 1);
    let i = &h.intervals[0];
    assert_eq!(
        (i.from_study, i.to_study, i.days),
        (first.id, second.id, Some(10))
    );
    let ch = i
        .changes
        .iter()
        .find(|c| c.measurement == "ctr")
        .expect("a CTR change");
    assert_eq!(
        (ch.prior.value, ch.current.value, ch.difference.value),
        (ctr0.value, ctr0.value, 0.0)
    );
    assert_eq!(ch.direction(), "unchanged");

    // the later study's draft was written with the prior beside it
    let d: ReportView = get(&c, &s, &format!("/api/studies/{}/draft", second.id));
    assert!(
        d.changes.iter().any(|c| c.measurement == "ctr"),
        "{:?}",
        d.changes
    );
    assert!(
        d.sentences
            .iter()
            .any(|x| x.row.ai_text.contains("since the prior")),
        "{:?}",
        d.sentences
    );
    let first_draft: ReportView = get(&c, &s, &format!("/api/studies/{}/draft", first.id));
    assert!(
        first_draft.changes.is_empty(),
        "the first study has no prior"
    );

    let (st, _) = refused(c.get(s.url("/api/patients/4242/history")).send().unwrap());
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// `(METHOD, path)` of every API route the router declares in `src/lib.rs`.
fn declared_routes() -> std::collections::BTreeSet<(String, String)> {
    let src = include_str!("../src/lib.rs");
    let mut out = std::collections::BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        // a route's text ends where the router's next step (or the function) begins
        let end = [".merge(", ".fallback(", ".route_layer(", "\n}"]
            .iter()
            .filter_map(|m| chunk.find(m))
            .min()
            .unwrap_or(chunk.len());
        let chunk = &chunk[..end];
        let Some(path) = chunk
            .trim_start()
            .strip_prefix('"')
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        if !(path.starts_with("/api/") || path == "/healthz") {
            continue;
        }
        // the method routers up to the next route: get(...), .post(...)
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = chunk.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !chunk.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && chunk.as_bytes()[i - 1] != b'_'
            });
            if called {
                out.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct OpenApi {
    openapi: String,
    paths:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
}

#[test]
fn feature_pages_show_a_latents_statistics_and_examples() {
    use radlens_interp::feature_db::Feature;
    use radlens_server::features::RunInfo;
    let dir = tempfile::tempdir().unwrap();
    let run = sae_run(dir.path());
    let mut cfg = config(dir.path());
    cfg.sae_runs = vec![run.clone()];
    let s = start_with(cfg);
    let c = login(&s, VIEWER);
    let runs: Vec<RunInfo> = get(&c, &s, "/api/features");
    assert_eq!(
        runs,
        [RunInfo {
            name: "sae-test".into(),
            latents: 4,
            lm: radlens_server::features::LmLink::Unavailable {
                reason: "steering and decoder logits need `radlens serve --lm-model GGUF`".into()
            }
        }]
    );
    // latent 2 fires with 5 on " enlarged" of each of the 3 reports (18 tokens)
    let r = c.get(s.url("/api/features/sae-test/2")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].clone();
    let f: Feature = r.json().unwrap();
    assert_eq!((f.index, f.fires, f.matryoshka_group), (2, 3, 0));
    assert!((f.frequency - 3.0 / 18.0).abs() < 1e-12);
    assert_eq!(
        (f.mean_activation, f.max_activation),
        (Some(5.0), Some(5.0))
    );
    assert_eq!(f.histogram.counts.iter().sum::<u64>(), 3);
    assert_eq!(f.histogram.counts.last(), Some(&3));
    assert_eq!(f.top.len(), 3);
    for ex in &f.top {
        assert_eq!(ex.token, " enlarged");
        assert_eq!(ex.context, SAE_REPORT);
        assert_eq!(ex.context[ex.focus], " enlarged");
        assert_eq!(ex.context_activations, [0.0, 0.0, 0.0, 5.0, 0.0, 0.0]);
    }
    assert!(f.concepts.is_empty());
    let (_, explainer, text, score) = SAE_EXPLANATIONS[0];
    assert_eq!(f.explanations.len(), 1);
    assert_eq!(
        (
            f.explanations[0].explainer.as_str(),
            f.explanations[0].text.as_str()
        ),
        (explainer, text)
    );
    assert_eq!(
        f.explanations[0]
            .scores
            .iter()
            .map(|s| s.score)
            .collect::<Vec<_>>(),
        [score.unwrap()]
    );
    // latent 1 grows along the report: its strongest example is the last token
    let f: Feature = get(&c, &s, "/api/features/sae-test/1");
    assert_eq!(f.fires, 15);
    assert_eq!(f.top[0].token, " Lungs");
    assert_eq!(f.top[0].activation, 2.5);
    assert!(f.quantiles.iter().all(|e| e.activation <= 2.5));
    // latent 0 never fires: a page with no examples, not an error
    let f: Feature = get(&c, &s, "/api/features/sae-test/0");
    assert_eq!((f.fires, f.max_activation), (0, None));
    assert!(f.top.is_empty() && f.quantiles.is_empty());
    // an unchanged feature revalidates to 304
    let r = c
        .get(s.url("/api/features/sae-test/2"))
        .header("if-none-match", etag.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // a new explanation written while serving (another process's commit) shows at once,
    // under a new tag
    let mut db = radlens_interp::autointerp::db::AutointerpDb::open(
        &run.join(radlens_server::features::FEATURE_DB),
    )
    .unwrap();
    db.put_explanation(2, "llm:test", "cardiac enlargement", &[])
        .unwrap();
    drop(db);
    let r = c
        .get(s.url("/api/features/sae-test/2"))
        .header("if-none-match", etag.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"], etag);
    let f: Feature = r.json().unwrap();
    let explainers: Vec<&str> = f
        .explanations
        .iter()
        .map(|e| e.explainer.as_str())
        .collect();
    assert_eq!(explainers, ["llm:test", "ngram"]);
    // unknown runs and latents are 404, a bad index 400; a path never reaches the disk
    for (path, status) in [
        ("/api/features/sae-test/4", StatusCode::NOT_FOUND),
        ("/api/features/nope/0", StatusCode::NOT_FOUND),
        ("/api/features/..%2Fsae-test/0", StatusCode::NOT_FOUND),
        ("/api/features/sae-test/-1", StatusCode::BAD_REQUEST),
        ("/api/features/sae-test/1e3", StatusCode::BAD_REQUEST),
    ] {
        let (got, msg) = refused(c.get(s.url(path)).send().unwrap());
        assert_eq!(got, status, "{path}: {msg}");
    }
    // signed-out visitors see nothing
    let r = client()
        .get(s.url("/api/features/sae-test/2"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn openapi_document_lists_exactly_the_routes_the_server_answers() {
    let doc: OpenApi = serde_json::from_str(radlens_server::assets::OPENAPI).unwrap();
    assert!(doc.openapi.starts_with("3.1"));
    let documented: std::collections::BTreeSet<(String, String)> = doc
        .paths
        .iter()
        .flat_map(|(p, ops)| ops.keys().map(move |m| (m.to_uppercase(), p.clone())))
        .collect();
    let declared = declared_routes();
    assert!(
        declared.len() > 20,
        "the route parser found only {declared:?}"
    );
    assert_eq!(
        documented, declared,
        "OpenAPI paths differ from the router's"
    );

    // the server serves the document, and answers every documented operation with
    // something other than "no such route" or "method not allowed"
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = client();
    let served: String = c
        .get(s.url("/api/openapi.json"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(served, radlens_server::assets::OPENAPI);
    for (method, path) in &documented {
        let url = s.url(
            &path
                .replace("{id}", "1")
                .replace("{sid}", "1")
                .replace("{name}", "structures"),
        );
        let r = match method.as_str() {
            "GET" => c.get(&url),
            _ => c.post(&url),
        }
        .send()
        .unwrap();
        let status = r.status();
        let text = r.text().unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !text.contains("no route"),
            "{method} {path}: {status} {text}"
        );
    }
}

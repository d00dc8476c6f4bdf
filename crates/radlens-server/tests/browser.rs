//! End to end in a real Chromium: open the workbench, upload a film through the form,
//! wait for the background job, and check that the overlay is drawn on the image, that
//! the draft's AI sentences are marked and light up their evidence on hover, and that a
//! sentence can be accepted and the report signed, and that the patient timeline shows
//! the study, without console errors. Screenshots
//! go to `<target>/tmp/radlens-browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; skipped with a message when they are
//! missing unless `RADLENS_REQUIRE_BROWSER` is set (CI sets it).

mod common;

use common::webdriver::{find_browser, Browser};
use common::*;
use serde_json::{json, Value};

#[test]
fn upload_view_overlay_draft_and_sign_in_chromium() {
    let Some((driver, chromium)) = find_browser() else {
        assert!(
            std::env::var_os("RADLENS_REQUIRE_BROWSER").is_none(),
            "RADLENS_REQUIRE_BROWSER is set but chromedriver or chromium is not installed"
        );
        eprintln!(
            "SKIPPED: chromedriver/chromium not found (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("radlens-browser");
    std::fs::create_dir_all(&shots).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let film = dir.path().join("film.png");
    std::fs::write(&film, small_film(256).0).unwrap();

    let b = Browser::start(&driver, &chromium);
    b.goto(&server.url("/"));
    let file = b.find("#upload-file");
    b.send_keys(&file, &film.to_string_lossy());
    b.send_keys(&b.find("#upload-patient"), "BROWSER-1");
    b.script(
        "document.getElementById('upload-date').value = '2022-05-04';",
        json!([]),
    );
    b.click(&b.find("#upload-submit"));

    // the study page: wait for the job and the draft
    b.wait_for(
        "the study page",
        "return location.pathname.startsWith('/studies/');",
    );
    b.wait_for(
        "the analysis and draft",
        "return Boolean(window.radlens && window.radlens.ready);",
    );
    b.wait_for(
        "the structures overlay",
        "return window.radlens.viewer.lastRender.overlays.includes('structures');",
    );
    b.screenshot(&shots.join("1-study.png"));

    // AI sentences are listed and marked as AI
    let n = b.script(
        "return document.querySelectorAll('li.sentence').length;",
        json!([]),
    );
    assert!(n.as_u64().unwrap() > 0, "no draft sentences");
    let unmarked = b.script(
        "return [...document.querySelectorAll('li.sentence.status-pending')].filter(li => !li.querySelector('.badge.ai')).length;",
        json!([]),
    );
    assert_eq!(
        unmarked,
        json!(0),
        "pending AI sentences without the AI badge"
    );

    // the overlay is on the canvas: a point inside the heart is tinted red, and grey
    // again once the structures overlay is switched off
    let probe = "const v = window.radlens.viewer, t = v.transform(), l = v.ctr.heart;
        const x = Math.round(t.ox + (l.x0 + l.x1) / 2 * t.s), y = Math.round(t.oy + (l.y - 6) * t.s);
        return Array.from(v.ctx.getImageData(x, y, 1, 1).data);";
    let rgb = |v: Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let on = rgb(b.script(probe, json!([])));
    assert!(
        on[0] > on[1] + 15,
        "no red structure tint inside the heart: {on:?}"
    );
    b.click(&b.find("input[data-overlay='structures']"));
    let off = rgb(b.script(probe, json!([])));
    assert!(
        (off[0] - off[1]).abs() <= 2 && (off[1] - off[2]).abs() <= 2,
        "overlay still drawn: {off:?}"
    );
    b.click(&b.find("input[data-overlay='structures']"));
    assert_eq!(
        b.script("return window.radlens.viewer.lastRender.ctr;", json!([])),
        json!(true)
    );

    // hovering a sentence with evidence highlights its region on the image
    let sid = b.script(
        "const d = window.radlens.draft; const s = d.sentences.find(s => s.evidence.some(e => e.region_box)); return s ? s.id : null;",
        json!([]),
    );
    let sid = sid.as_i64().expect("a sentence with an evidence box");
    let li = b.find(&format!("li.sentence[data-sentence='{sid}'] .text"));
    b.hover(&li);
    b.wait_for(
        "the evidence highlight",
        &format!("return window.radlens.viewer.lastRender.highlights > 0 && document.querySelector(\"li.sentence[data-sentence='{sid}']\").classList.contains('active');"),
    );
    b.screenshot(&shots.join("2-evidence.png"));

    // accept it as a named reader, then sign
    b.send_keys(&b.find("#author"), "Dr Browser");
    b.click(&b.find(&format!(
        "li.sentence[data-sentence='{sid}'] .actions button"
    )));
    b.wait_for(
        "the accepted sentence",
        &format!("const li = document.querySelector(\"li.sentence[data-sentence='{sid}']\"); return Boolean(li) && li.classList.contains('status-accepted');"),
    );
    b.click(&b.find("#sign"));
    b.wait_for(
        "the signature",
        "return document.getElementById('signed-status').textContent.includes('Dr Browser');",
    );
    b.wait_for(
        "the FHIR link",
        "return !document.getElementById('fhir-link').hidden;",
    );
    b.screenshot(&shots.join("3-signed.png"));

    // the patient's timeline shows the study with its overlay
    b.goto(&server.url("/patients/1"));
    b.wait_for(
        "the timeline",
        "return Boolean(window.radlens && window.radlens.ready);",
    );
    assert_eq!(
        b.script(
            "return window.radlens.viewers.map(v => v.lastRender.overlays.includes('structures'));",
            json!([])
        ),
        json!([true])
    );
    b.screenshot(&shots.join("4-timeline.png"));

    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(b.url().ends_with("/patients/1"));
}

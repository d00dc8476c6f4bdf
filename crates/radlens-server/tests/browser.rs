//! End to end in a real Chromium: sign in, upload a film through the form, wait for the
//! background job, see the overlay drawn on the image, hover a draft sentence and see its
//! evidence region light up, accept it and sign, check a typed report with a
//! contradiction and see the flag, search "heart" and see its region, and open the
//! patient's timeline with a prior side by side, open an SAE feature's page from the
//! study list and see its top contexts with the firing token highlighted, search features
//! by token, open a feature of an SAE on the real SmolLM2 and steer it (two replies side
//! by side); no page logs a console error, and the administrator's page shows the audit
//! trail. A screenshot of each step goes to `<target>/tmp/radlens-browser/` (the test
//! prints the folder).
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
    eprintln!("screenshots: {}", shots.display());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.sae_runs = vec![
        sae_run(dir.path()),
        smollm2_sae_run(dir.path(), "smol", 8, 6),
    ];
    cfg.lm_model = Some(smollm2());
    let server = start_with(cfg);
    let film = dir.path().join("film.png");
    std::fs::write(&film, small_film(256).0).unwrap();

    let b = Browser::start(&driver, &chromium);
    // an unsigned visitor is sent to the sign-in page, and back after signing in
    b.goto(&server.url("/"));
    b.wait_for(
        "the sign-in page",
        "return location.pathname === '/login' && Boolean(document.getElementById('login-form'));",
    );
    b.screenshot(&shots.join("0-sign-in.png"));
    no_console_errors(&b, "the sign-in page");
    b.send_keys(&b.find("#login-username"), RADIOLOGIST);
    b.send_keys(&b.find("#login-password"), PASSWORD);
    b.click(&b.find("#login-submit"));
    b.wait_for(
        "the study list",
        &format!("return location.pathname === '/' && (document.getElementById('user-name') || {{}}).textContent === '{RADIOLOGIST} (radiologist)';"),
    );
    b.screenshot(&shots.join("1-studies.png"));
    no_console_errors(&b, "the study list");
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
    b.screenshot(&shots.join("2-study.png"));

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
    b.screenshot(&shots.join("3-evidence.png"));

    // accept it, then sign (in the signed-in reader's name)
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
        &format!("return document.getElementById('signed-status').textContent.includes('{RADIOLOGIST}');"),
    );
    b.wait_for(
        "the FHIR link",
        "return !document.getElementById('fhir-link').hidden;",
    );
    b.screenshot(&shots.join("4-signed.png"));

    // a typed report that says the opposite of the measured heart size is flagged inline
    let api = login(&server, RADIOLOGIST);
    let study_id = b
        .script("return window.radlens.studyId;", json!([]))
        .as_i64()
        .unwrap();
    let view: radlens_server::results::StudyView = api
        .get(server.url(&format!("/api/studies/{study_id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ctr = view.analysis.unwrap().measurements.ctr.unwrap();
    let (claim, kind) = match ctr.side_of(0.5) {
        Some(true) => ("Heart size is normal.", "contradiction"),
        Some(false) => ("The heart is enlarged.", "contradiction"),
        None => ("The heart is enlarged.", "uncertain"),
    };
    let report = format!("FINDINGS: {claim} Lungs are clear.");
    // the labeller's own mention of heart size is what the page must mark, to the character
    let mention = radlens_report::Labeler::builtin()
        .unwrap()
        .mentions(&report)
        .into_iter()
        .find(|m| m.observation == radlens_report::Observation::Cardiomegaly)
        .unwrap()
        .text;
    b.click(&b.find("[data-tab='review']"));
    b.send_keys(&b.find("#review-text"), &report);
    b.click(&b.find("#review-run"));
    b.wait_for(
        "the review flag",
        &format!("return Boolean(document.querySelector(\"#review-flags .flag-item[data-flag='{kind}']\")) && Boolean(document.querySelector('#review-marked mark.flag'));"),
    );
    let marked = b.script(
        "return document.querySelector('#review-marked mark.flag').textContent;",
        json!([]),
    );
    assert_eq!(marked.as_str(), Some(mention.as_str()), "in '{report}'");
    b.screenshot(&shots.join("5-review-flag.png"));

    // "where is the heart" answers with the heart's region on the image
    b.click(&b.find("[data-tab='search']"));
    b.script("window.radlens.viewer.setHighlights([]);", json!([]));
    b.send_keys(&b.find("#search-q"), "where is the heart");
    b.click(&b.find("#search-form button"));
    b.wait_for(
        "the search region",
        "return window.radlens.viewer.lastRender.highlights > 0 && document.getElementById('search-result').textContent.length > 0;",
    );
    b.screenshot(&shots.join("6-search-heart.png"));
    no_console_errors(&b, "the study page");

    // a later film of the same patient: the timeline shows both, side by side, with changes
    let (png, _) = small_film(256);
    let r = upload(
        &api,
        &server,
        png,
        "later.png",
        &[("patient_id", "BROWSER-1"), ("study_date", "2022-05-14")],
    );
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let later: radlens_server::api::Created = r.json().unwrap();
    let job = wait_job(&api, &server, later.job.id);
    assert_eq!(
        job.state,
        radlens_server::db::records::JobState::Done,
        "{job:?}"
    );
    b.goto(&server.url(&format!("/patients/{}", later.patient_id)));
    b.wait_for(
        "the timeline",
        "return Boolean(window.radlens && window.radlens.ready);",
    );
    assert_eq!(
        b.script(
            "return window.radlens.viewers.map(v => v.lastRender.overlays.includes('structures'));",
            json!([])
        ),
        json!([true, true])
    );
    let heading = b.script(
        "return document.querySelector('#intervals h3').textContent;",
        json!([]),
    );
    assert!(heading.as_str().unwrap().contains("(10 days)"), "{heading}");
    assert_eq!(
        b.script(
            "return Boolean(document.querySelector(\"#intervals tr[data-change='ctr']\"));",
            json!([])
        ),
        json!(true)
    );
    b.screenshot(&shots.join("7-prior-comparison.png"));
    no_console_errors(&b, "the patient timeline");

    // the study list links the SAE run; latent 2's top contexts mark " enlarged" fully
    b.goto(&server.url("/"));
    b.wait_for(
        "the SAE run link",
        "return Boolean(document.querySelector(\"#sae-runs a[data-run='sae-test']\"));",
    );
    b.click(&b.find("#sae-runs a[data-run='sae-test']"));
    b.wait_for(
        "latent 0",
        "return Boolean(window.radlens && window.radlens.feature && window.radlens.feature.index === 0);",
    );
    b.script(
        "document.getElementById('feature-index').value = '2';",
        json!([]),
    );
    b.click(&b.find("#feature-go button[type='submit']"));
    b.wait_for(
        "latent 2's contexts",
        "return window.radlens.feature.index === 2 && document.querySelectorAll('#feature-top .context').length === 3;",
    );
    let focus = b.script(
        "return [...document.querySelectorAll('#feature-top .tok.focus')].map(t => [t.textContent, getComputedStyle(t).backgroundColor]);",
        json!([]),
    );
    assert_eq!(
        focus,
        json!(vec![json!([" enlarged", "rgb(255, 140, 0)"]); 3]),
        "the firing token at full shade"
    );
    assert_eq!(
        b.script(
            "return document.querySelectorAll('#feature-histogram rect').length;",
            json!([])
        ),
        json!(20)
    );
    // its explanation, with its score
    assert_eq!(
        b.script(
            "return [...document.querySelectorAll('#feature-explanations li')].map(li => li.textContent);",
            json!([])
        ),
        json!([format!("{} · ngram embedding 0.930", SAE_EXPLANATIONS[0].2)])
    );
    // this run's SAE is not SmolLM2's: the page says why instead of offering steering
    let note = b.script(
        "return document.getElementById('steer-note').textContent;",
        json!([]),
    );
    assert!(note.as_str().unwrap().contains("not available"), "{note}");
    assert_eq!(
        b.script("return [document.getElementById('steer-form').hidden, document.getElementById('feature-logits-card').hidden];", json!([])),
        json!([true, true])
    );
    b.screenshot(&shots.join("8-feature.png"));
    no_console_errors(&b, "the feature page");

    // search the run by token: the hit links latent 2
    b.script(
        "document.getElementById('feature-index').value = '0';",
        json!([]),
    );
    b.click(&b.find("#feature-go button[type='submit']"));
    b.wait_for(
        "latent 0 again",
        "return window.radlens.feature.index === 0;",
    );
    b.send_keys(&b.find("#feature-search-q"), "enlarged");
    b.click(&b.find("#feature-search button"));
    b.wait_for(
        "the search hit",
        "return Boolean(document.querySelector(\"#feature-search-results li[data-latent='2'] a\"));",
    );
    b.screenshot(&shots.join("8b-feature-search.png"));
    b.click(&b.find("#feature-search-results li[data-latent='2'] a"));
    b.wait_for(
        "latent 2 from the search",
        "return window.radlens.feature.index === 2;",
    );
    no_console_errors(&b, "the feature search");

    // a run whose SAE fits SmolLM2: decoder logits, and a side-by-side steered generation
    b.goto(&server.url("/features/smol/1"));
    b.wait_for(
        "latent 1's decoder logits",
        "return Boolean(window.radlens && window.radlens.logits) && document.querySelectorAll('#feature-logits-top li').length === 20;",
    );
    b.script(
        "document.getElementById('steer-coef').value = '60'; document.getElementById('steer-max-tokens').value = '6';",
        json!([]),
    );
    b.click(&b.find("#steer-run"));
    b.wait_for(
        "the steered generation",
        "return Boolean(window.radlens.steered) && !document.getElementById('steer-result').hidden;",
    );
    let replies = b.script(
        "return [document.getElementById('steer-baseline').textContent, document.getElementById('steer-steered').textContent];",
        json!([]),
    );
    assert_ne!(
        replies[0], replies[1],
        "steering changed nothing: {replies}"
    );
    b.script(
        "document.getElementById('steer-card').scrollIntoView();",
        json!([]),
    );
    b.screenshot(&shots.join("8c-steer.png"));
    no_console_errors(&b, "the steering box");

    // the administrator sees who signed
    b.click(&b.find("#logout"));
    b.wait_for("the sign-in page", "return location.pathname === '/login';");
    b.send_keys(&b.find("#login-username"), ADMIN);
    b.send_keys(&b.find("#login-password"), PASSWORD);
    b.click(&b.find("#login-submit"));
    b.wait_for("the study list", "return location.pathname === '/';");
    b.goto(&server.url("/admin"));
    b.wait_for(
        "the audit trail",
        &format!("return Boolean(window.radlens && window.radlens.ready) && [...document.querySelectorAll(\"#audit tr[data-action='sign']\")].some(tr => tr.textContent.includes('{RADIOLOGIST}'));"),
    );
    b.screenshot(&shots.join("9-audit.png"));
    no_console_errors(&b, "the admin page");
}

/// Errors the page logged since the last check (script errors, failed requests).
fn no_console_errors(b: &Browser, page: &str) {
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors on {page}: {errors:?}");
}

//! Accounts and security against a real server: sign-in, sessions that expire and end,
//! CSRF and origin checks on state-changing requests, roles, the admin's account
//! management and audit trail, and the server log of every refusal. Refused requests
//! must change nothing.

mod common;

use common::*;
use radlens_server::api::Created;
use radlens_server::auth::Me;
use radlens_server::db::accounts::{AuditAction, AuditEntry, Role, User};
use radlens_server::db::records::{JobState, SentenceEdit, Study};
use radlens_server::error::ErrorBody;
use radlens_server::results::ReportView;
use reqwest::blocking::RequestBuilder;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// The server's tracing output, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// The log lines of the request with this id.
    fn of_request(&self, id: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).to_string();
        let tag = format!("request{{id={id} ");
        text.lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    }
}

/// Send `r` and expect a refusal: the status, a message naming `needle`, and a warning
/// in the server log under the answer's request id.
fn refused(logs: &Logs, r: RequestBuilder, status: StatusCode, needle: &str) {
    let r = r.send().unwrap();
    let url = r.url().to_string();
    assert_eq!(r.status(), status, "{url}");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: ErrorBody = r.json().unwrap();
    assert!(
        body.error.contains(needle),
        "{url}: '{}' does not mention '{needle}'",
        body.error
    );
    let lines = logs.of_request(&id);
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("request refused")
            && l.contains(&format!("status={}", status.as_u16()))),
        "{url}: no refusal logged for request {id}: {lines:?}"
    );
}

#[test]
fn sessions_csrf_and_roles_are_enforced_audited_and_logged() {
    let logs = Logs::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let anon = client();

    // passwords are stored as argon2id hashes, never as text
    {
        let db = radlens_server::db::Db::open(&dir.path().join("radlens.sqlite")).unwrap();
        let hashes: Vec<String> = db
            .lock()
            .prepare("SELECT password_hash FROM users")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(hashes.len(), 4);
        assert!(hashes
            .iter()
            .all(|h| h.starts_with("$argon2id$") && !h.contains(PASSWORD)));
    }

    // a radiologist uploads a film; its analysis is what the refused requests try to change
    let rad = login(&s, RADIOLOGIST);
    let (png, _) = small_film(256);
    let r = upload(
        &rad,
        &s,
        png.clone(),
        "film.png",
        &[("patient_id", "SEC-1")],
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Created = r.json().unwrap();
    assert_eq!(wait_job(&rad, &s, created.job.id).state, JobState::Done);
    let study = created.id;
    let draft_url = s.url(&format!("/api/studies/{study}/draft"));
    let before: ReportView = rad.get(&draft_url).send().unwrap().json().unwrap();
    let sid = before.sentences[0].row.id;
    let sentence_url = s.url(&format!("/api/studies/{study}/sentences/{sid}"));
    let sign_url = s.url(&format!("/api/studies/{study}/sign"));

    // no session, a forged one, a wrong password
    refused(
        &logs,
        anon.get(s.url("/api/studies")),
        StatusCode::UNAUTHORIZED,
        "sign in",
    );
    refused(
        &logs,
        anon.post(&sign_url),
        StatusCode::UNAUTHORIZED,
        "sign in",
    );
    refused(
        &logs,
        anon.get(&draft_url)
            .header("cookie", "radlens_session=forged-token-0123456789"),
        StatusCode::UNAUTHORIZED,
        "unknown",
    );
    refused(
        &logs,
        anon.post(s.url("/api/login"))
            .json(&json!({"username": RADIOLOGIST, "password": "wrong password!"})),
        StatusCode::UNAUTHORIZED,
        "wrong username or password",
    );
    refused(
        &logs,
        anon.post(s.url("/api/login"))
            .json(&json!({"username": "nobody", "password": PASSWORD})),
        StatusCode::UNAUTHORIZED,
        "wrong username or password",
    );
    // a login form posted from another site
    refused(
        &logs,
        anon.post(s.url("/api/login"))
            .header("origin", "http://evil.example")
            .json(&json!({"username": RADIOLOGIST, "password": PASSWORD})),
        StatusCode::FORBIDDEN,
        "cross-origin",
    );

    // the right cookie without the CSRF token, with a wrong one, or from another origin
    let (cookie, me) = session(&s, RADIOLOGIST);
    assert_eq!(me.role, Role::Radiologist);
    let accept = json!({"action": "accept"});
    refused(
        &logs,
        anon.post(&sentence_url)
            .header("cookie", &cookie)
            .json(&accept),
        StatusCode::FORBIDDEN,
        "x-csrf-token",
    );
    refused(
        &logs,
        anon.post(&sign_url)
            .header("cookie", &cookie)
            .header("x-csrf-token", "0".repeat(me.csrf_token.len())),
        StatusCode::FORBIDDEN,
        "x-csrf-token",
    );
    refused(
        &logs,
        anon.post(&sign_url)
            .header("cookie", &cookie)
            .header("x-csrf-token", &me.csrf_token)
            .header("origin", "http://evil.example"),
        StatusCode::FORBIDDEN,
        "cross-origin",
    );
    // reading needs no CSRF token
    assert_eq!(
        anon.get(&draft_url)
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // a viewer reads but cannot upload, edit, review, sign or administer
    let viewer = login(&s, VIEWER);
    assert_eq!(
        viewer.get(&draft_url).send().unwrap().status(),
        StatusCode::OK
    );
    refused(
        &logs,
        viewer.post(&sentence_url).json(&accept),
        StatusCode::FORBIDDEN,
        "may not edit",
    );
    refused(
        &logs,
        viewer.post(&sign_url),
        StatusCode::FORBIDDEN,
        "may not edit",
    );
    refused(
        &logs,
        viewer
            .post(s.url(&format!("/api/studies/{study}/review")))
            .json(&json!({"text": "Heart size is normal."})),
        StatusCode::FORBIDDEN,
        "may not edit",
    );
    refused(
        &logs,
        viewer.post(s.url(&format!("/api/studies/{study}/analyse"))),
        StatusCode::FORBIDDEN,
        "may not upload",
    );
    // (a small body: the server answers before reading it, and may close the connection
    // under a client still sending a large one)
    let small_upload = || {
        reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(png[..64].to_vec()).file_name("v.png"),
            )
            .text("patient_id", "SEC-2")
    };
    refused(
        &logs,
        viewer.post(s.url("/api/studies")).multipart(small_upload()),
        StatusCode::FORBIDDEN,
        "may not upload",
    );
    // a refusal of a request with a body closes the connection and says so, so that the
    // next request does not go down a connection the server is dropping (it did, and the
    // request below failed now and then with an incomplete message)
    let r = viewer
        .post(s.url("/api/studies"))
        .multipart(small_upload())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["connection"], "close");
    refused(
        &logs,
        viewer.get(s.url("/api/audit")),
        StatusCode::FORBIDDEN,
        "may not manage",
    );
    // an administrator manages accounts but does not sign reports; a radiologist the reverse
    let admin = login(&s, ADMIN);
    refused(
        &logs,
        admin.post(&sign_url),
        StatusCode::FORBIDDEN,
        "may not edit",
    );
    refused(
        &logs,
        rad.get(s.url("/api/users")),
        StatusCode::FORBIDDEN,
        "may not manage",
    );

    // an expired session is refused and forgotten
    let (old_cookie, _) = session(&s, RADIOLOGIST_2);
    {
        let db = radlens_server::db::Db::open(&dir.path().join("radlens.sqlite")).unwrap();
        db.lock()
            .execute("UPDATE sessions SET expires_at = 1", [])
            .unwrap();
    }
    let studies_url = s.url("/api/studies");
    refused(
        &logs,
        anon.get(&studies_url).header("cookie", &old_cookie),
        StatusCode::UNAUTHORIZED,
        "expired",
    );
    refused(
        &logs,
        anon.get(&studies_url).header("cookie", &old_cookie),
        StatusCode::UNAUTHORIZED,
        "unknown",
    );
    // a page asking who is signed in hears "nobody", not an error
    let nobody: Option<Me> = anon
        .get(s.url("/api/me"))
        .header("cookie", &old_cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(nobody.is_none());
    // (every earlier session expired with it)
    let rad = login(&s, RADIOLOGIST);
    let admin = login(&s, ADMIN);

    // sign-out ends the session on the server, not only in the browser
    let (cookie, me) = session(&s, RADIOLOGIST_2);
    let r = anon
        .post(s.url("/api/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &me.csrf_token)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    refused(
        &logs,
        anon.get(&studies_url).header("cookie", &cookie),
        StatusCode::UNAUTHORIZED,
        "unknown",
    );

    // nothing the refused requests aimed at changed
    let after: ReportView = rad.get(&draft_url).send().unwrap().json().unwrap();
    assert_eq!(after, before);
    assert!(after.signed.is_none());
    let edits: Vec<SentenceEdit> = rad
        .get(s.url(&format!("/api/studies/{study}/edits")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(edits.is_empty(), "{edits:?}");
    let studies: Vec<Study> = rad
        .get(s.url("/api/studies"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(studies.len(), 1);

    // the admin adds, refuses duplicates and weak passwords, disables; not themselves
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({"username": "new.reader", "password": PASSWORD, "role": "viewer"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let new_user: User = r.json().unwrap();
    assert_eq!(new_user.role, Role::Viewer);
    let again = admin
        .post(s.url("/api/users"))
        .json(&json!({"username": "new.reader", "password": "a long passphrase", "role": "admin"}));
    refused_quietly(again, StatusCode::CONFLICT, "already exists");
    let weak = admin
        .post(s.url("/api/users"))
        .json(&json!({"username": "weak", "password": "short", "role": "viewer"}));
    refused_quietly(weak, StatusCode::BAD_REQUEST, "10 to 1024");
    let me: Option<Me> = login(&s, "new.reader")
        .get(s.url("/api/me"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me.unwrap().username, "new.reader");
    let r = admin
        .post(s.url(&format!("/api/users/{}", new_user.id)))
        .json(&json!({"role": "viewer", "disabled": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = anon
        .post(s.url("/api/login"))
        .json(&json!({"username": "new.reader", "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled account signs in"
    );
    let admin_id = admin
        .get(s.url("/api/users"))
        .send()
        .unwrap()
        .json::<Vec<User>>()
        .unwrap()
        .into_iter()
        .find(|u| u.username == ADMIN)
        .unwrap()
        .id;
    let demote = admin
        .post(s.url(&format!("/api/users/{admin_id}")))
        .json(&json!({"role": "viewer", "disabled": false}));
    refused_quietly(demote, StatusCode::CONFLICT, "themselves");

    // the audit trail: who uploaded, who was refused what, failed sign-ins, account changes
    let trail: Vec<AuditEntry> = admin
        .get(s.url("/api/audit?limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let has = |user: &str, action: AuditAction, detail: &str| {
        trail.iter().any(|e| {
            e.username.as_deref() == Some(user) && e.action == action && e.detail.contains(detail)
        })
    };
    assert!(has(RADIOLOGIST, AuditAction::Upload, "film.png"));
    assert!(trail
        .iter()
        .any(|e| e.action == AuditAction::Upload && e.study_id == Some(study)));
    assert!(has(VIEWER, AuditAction::Denied, "may not edit"));
    assert!(has(ADMIN, AuditAction::Denied, "may not edit"));
    assert!(has(RADIOLOGIST, AuditAction::Denied, "x-csrf-token"));
    assert!(has("nobody", AuditAction::LoginFailed, "wrong"));
    assert!(has(RADIOLOGIST_2, AuditAction::Logout, ""));
    assert!(has(ADMIN, AuditAction::UserAdd, "new.reader as viewer"));
    assert!(has(ADMIN, AuditAction::UserUpdate, "disabled"));
    assert!(!trail.iter().any(|e| e.action == AuditAction::Sign));
    assert!(
        trail.iter().all(|e| !e.detail.contains(PASSWORD)),
        "a password in the audit trail"
    );
    let of_study: Vec<AuditEntry> = admin
        .get(s.url(&format!("/api/audit?study={study}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(!of_study.is_empty() && of_study.iter().all(|e| e.study_id == Some(study)));
    refused_quietly(
        admin.get(s.url("/api/audit?limit=0")),
        StatusCode::BAD_REQUEST,
        "limit",
    );
}

/// A refusal that is not a security event (no warning expected in the log).
fn refused_quietly(r: RequestBuilder, status: StatusCode, needle: &str) {
    let r = r.send().unwrap();
    assert_eq!(r.status(), status);
    let body: ErrorBody = r.json().unwrap();
    assert!(body.error.contains(needle), "{}", body.error);
}

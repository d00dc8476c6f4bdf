//! `radlens serve` as a user starts it: it prints its address once bound, answers on it,
//! and refuses a missing model by name; `radlens user` and `radlens import`, which fill
//! its database.

mod common;
mod server;

use common::{radlens, shared, stderr};
use server::Server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/jsrt-ssn")
}

#[test]
fn serve_prints_its_address_and_answers_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_radlens"))
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(&db)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--model")
            .arg(model())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("radlens runs"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in '{line}'"));
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("\"status\":\"ok\"") && reply.contains("jsrt-ssn@"),
        "{reply}"
    );
    assert!(db.is_file(), "the database was not created");
}

#[test]
fn serve_refuses_a_missing_model_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_radlens"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--db",
            &dir.path().join("w.sqlite").to_string_lossy(),
            "--data-dir",
            &dir.path().join("data").to_string_lossy(),
            "--model",
            "no/such/model",
        ])
        .output()
        .expect("radlens runs");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--model no/such/model"), "{err}");
}

/// `radlens user add` with the password on standard input.
fn user_add(db: &std::path::Path, name: &str, role: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_radlens"))
        .args(["user", "add", "--db"])
        .arg(db)
        .args(["--username", name, "--password-stdin", "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radlens runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_add_stores_a_hash_of_the_password_from_stdin_and_refuses_bad_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let secret = "a long passphrase for dr.a";
    let o = user_add(&db, "dr.a", "radiologist", &format!("{secret}\n"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("added dr.a (radiologist)"), "{out}");
    for (name, role, password, why) in [
        (
            "dr.a",
            "viewer",
            "another long passphrase",
            "already exists",
        ),
        ("dr.b", "viewer", "short", "10 to 1024"),
        ("dr.c", "boss", "a long passphrase", "unknown role"),
        ("dr d", "viewer", "a long passphrase", "username"),
    ] {
        let o = user_add(&db, name, role, password);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} {role} was accepted");
        assert!(err.contains(why), "{name} {role}: {err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_radlens"))
        .args(["user", "list", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 1, "{list}");
    assert!(rows[0].starts_with("dr.a\tradiologist\tactive\t"), "{list}");
    // the password is nowhere in the database's files
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext password stored"
        );
    }
}

/// The database `import_twice` fills, in its folder.
const IMPORT_DB: &str = "w.sqlite";

/// `radlens import SPEC` into `dir/w.sqlite` and `dir/data`, twice: what the first run
/// printed (the second must find all `films` already there).
fn import_twice(spec: &str, dir: &std::path::Path, films: usize) -> String {
    let (db, data) = (dir.join(IMPORT_DB), dir.join("data"));
    let args = [
        "import",
        spec,
        "--db",
        &db.to_string_lossy(),
        "--data-dir",
        &data.to_string_lossy(),
    ];
    let o = radlens(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = String::from_utf8_lossy(&o.stdout).into_owned();
    let o = radlens(&args);
    let again = String::from_utf8_lossy(&o.stdout);
    assert!(
        again.contains(&format!("0 imported, {films} already there")),
        "{again}{}",
        stderr(&o)
    );
    first
}

#[test]
fn import_brings_in_every_covid_cxr_film_with_its_patient_date_and_view_once() {
    let dir = tempfile::tempdir().unwrap();
    let covid = shared().join("data/covid-cxr");
    // patients as metadata.csv lists them (../shared/data/README.md: 70 films)
    let mut meta = csv::Reader::from_path(covid.join("metadata.csv")).unwrap();
    let h = meta.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (c_patient, c_view) = (col("patientid"), col("view"));
    let rows: Vec<csv::StringRecord> = meta.records().map(Result::unwrap).collect();
    let patients: std::collections::BTreeSet<&str> = rows.iter().map(|r| &r[c_patient]).collect();
    let ap = rows.iter().filter(|r| &r[c_view] == "AP").count();

    let out = import_twice(&format!("covid-cxr:{}", covid.display()), dir.path(), 70);
    let expected = format!(
        "70 films of {} patients; 70 imported, 0 already there",
        patients.len()
    );
    assert!(out.contains(&expected), "{out}");

    let db = radlens_server::db::Db::open(&dir.path().join(IMPORT_DB)).unwrap();
    let c = db.lock();
    let studies = radlens_server::db::records::studies(&c, None).unwrap();
    assert_eq!(studies.len(), 70);
    assert_eq!(
        radlens_server::db::records::patients(&c).unwrap().len(),
        patients.len()
    );
    assert_eq!(
        studies
            .iter()
            .filter(|s| s.view.as_deref() == Some("AP"))
            .count(),
        ap
    );
    assert!(studies
        .iter()
        .all(|s| matches!(s.view.as_deref(), Some("AP" | "PA"))));
    // patient 2: four films, 0, 3, 5 and 6 days after admission on 22 January 2020
    let dates: Vec<Option<&str>> = studies
        .iter()
        .filter(|s| s.patient_key == "covid-cxr-2")
        .map(|s| s.study_date.as_deref())
        .collect();
    assert_eq!(
        dates,
        [
            Some("2020-01-22"),
            Some("2020-01-25"),
            Some("2020-01-27"),
            Some("2020-01-28")
        ]
    );
    // one stored file per film, none left half-written
    let files = std::fs::read_dir(dir.path().join("data/studies"))
        .unwrap()
        .count();
    assert_eq!(files, 70);
}

/// JSRT laid out as the dataset is (`images/`, both clinical tables), three films only.
#[test]
fn import_brings_in_jsrt_films_as_one_pa_study_per_patient_once() {
    let dir = tempfile::tempdir().unwrap();
    let jsrt = shared().join("data/jsrt");
    let copy = dir.path().join("jsrt");
    std::fs::create_dir_all(copy.join("images")).unwrap();
    for table in ["CLNDAT_EN.txt", "CNNDAT_EN.TXT"] {
        std::fs::copy(jsrt.join(table), copy.join(table)).unwrap();
    }
    let films = ["JPCLN001", "JPCLN002", "JPCNN001"];
    for f in films {
        let name = format!("images/{f}.png");
        std::fs::copy(jsrt.join(&name), copy.join(&name)).unwrap();
    }
    let out = import_twice(&format!("jsrt:{}", copy.display()), dir.path(), 3);
    assert!(
        out.contains("3 films of 3 patients; 3 imported, 0 already there"),
        "{out}"
    );

    let db = radlens_server::db::Db::open(&dir.path().join(IMPORT_DB)).unwrap();
    let studies = radlens_server::db::records::studies(&db.lock(), None).unwrap();
    let mut keys: Vec<&str> = studies.iter().map(|s| s.patient_key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, films.map(|f| format!("jsrt-{f}")));
    for s in &studies {
        // the PNG header's width and height (bytes 16..24 of IHDR)
        let png = std::fs::read(jsrt.join(format!("images/{}.png", &s.patient_key[5..]))).unwrap();
        let side = |at: usize| i64::from(u32::from_be_bytes(png[at..at + 4].try_into().unwrap()));
        assert_eq!((s.width, s.height), (side(16), side(20)));
        // JSRT records neither dates nor views: every film is a PA view at 0.35 mm
        assert_eq!(s.view.as_deref(), Some("PA"));
        assert_eq!(s.study_date, None);
        assert_eq!(s.spacing_mm, Some(0.35));
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/studies"))
            .unwrap()
            .count(),
        3
    );
}

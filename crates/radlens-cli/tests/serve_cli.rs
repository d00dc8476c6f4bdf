//! `radlens serve` as a user starts it: it prints its address once bound, answers on it,
//! and refuses a missing model by name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/jsrt-ssn")
}

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

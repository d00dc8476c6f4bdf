//! `radlens report draft/search --endpoint` end to end against `radlens lm serve` with the
//! real SmolLM2 GGUF: a text-only model, so the server refuses the image parts, and the
//! draft must fail with that reason and the endpoint named, printing no finding.

#[allow(dead_code)] // helpers shared with the other binary tests
mod common;
mod server;

use common::{shared, stderr};
use server::Server;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_text_only_server_is_a_clear_error_not_a_draft() {
    let gguf = shared().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_radlens"))
            .args(["lm", "serve", "--bind", "127.0.0.1:0", "--model"])
            .arg(&gguf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("radlens runs"),
    );
    // Read the address, then keep draining the server's stderr so it never writes to a
    // closed pipe.
    let server_log = BufReader::new(server.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in server_log.lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("serving ") {
                let url = rest.split(" at ").nth(1).and_then(|u| u.split(' ').next());
                let _ = tx.send(url.unwrap_or_default().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("lm serve prints its address");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );
    let image = shared().join("data/jsrt/images/JPCLN001.png");
    let run = |command: &[&str], model: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_radlens"))
            .arg("report")
            .args(command)
            .arg("--image")
            .arg(&image)
            .args(["--endpoint", &url, "--vlm-model", model, "--json"])
            .output()
            .expect("radlens runs");
        assert!(!o.status.success(), "{command:?} succeeded");
        assert!(o.stdout.is_empty(), "{command:?} printed a result");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("VLM endpoint {url}/chat/completions"))
                && err.contains("nothing was drafted"),
            "{command:?}: {err}"
        );
        err
    };
    let served = "SmolLM2-135M-Instruct.Q4_1.gguf";
    for command in [
        &["draft", "--indication", "cough"][..],
        &["search", "--query", "left pleural effusion"],
    ] {
        let err = run(command, served);
        assert!(
            err.contains("HTTP 400") && err.contains("this model reads text only"),
            "{command:?}: {err}"
        );
    }
    let err = run(&["draft"], "maira-2");
    assert!(
        err.contains("HTTP 404") && err.contains("'maira-2' is not served here"),
        "{err}"
    );
}

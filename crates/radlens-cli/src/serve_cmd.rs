//! `radlens serve`: the clinician workbench on an embedded database.

use anyhow::{anyhow, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// SQLite database file (created and migrated when needed).
    #[arg(long, default_value = "radlens.sqlite")]
    db: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Folder for uploaded files (`<dir>/studies/`).
    #[arg(long, default_value = "radlens-data")]
    data_dir: PathBuf,
    /// Anatomy model run folder (lungs and heart).
    #[arg(long, default_value = crate::MEASUREMENT_MODEL)]
    model: PathBuf,
    /// SSN samples per image (measurement intervals and the uncertainty map); the model's
    /// interval margins hold only for the count they were calibrated at (32 for the shipped
    /// measurement model), and any other count leaves the intervals raw.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = 64)]
    max_upload_mb: usize,
    /// How long a sign-in lasts, in hours.
    #[arg(long, default_value_t = 12)]
    session_hours: u64,
    /// Longest a request may take, in seconds, before it is answered 503.
    #[arg(long, default_value_t = 30)]
    request_timeout_s: u64,
    /// Mark the session cookie Secure: set this when users reach the server over HTTPS
    /// (a TLS proxy in front of it); browsers drop Secure cookies on plain HTTP.
    #[arg(long)]
    secure_cookie: bool,
    /// An SAE run folder for the feature browser, holding the `features.sqlite` that
    /// `radlens sae features --out DIR/features.sqlite` wrote; repeat for several runs.
    #[arg(long = "sae-run")]
    sae_runs: Vec<PathBuf>,
    /// The language model (GGUF) the SAE runs were trained on: enables the feature
    /// pages' steering box and decoder logits (each run folder must then hold its SAE,
    /// as `radlens sae train --out DIR` writes it).
    #[arg(long)]
    lm_model: Option<PathBuf>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let cfg = radlens_server::Config {
        db: a.db,
        bind: a.bind,
        data_dir: a.data_dir,
        model: a.model,
        samples: a.samples,
        seed: a.seed,
        max_upload: a.max_upload_mb.saturating_mul(1 << 20),
        session_ttl: Duration::from_secs(a.session_hours.saturating_mul(3600)),
        request_timeout: Duration::from_secs(a.request_timeout_s),
        secure_cookie: a.secure_cookie,
        sae_runs: a.sae_runs,
        lm_model: a.lm_model,
    };
    if a.session_hours == 0 || a.request_timeout_s == 0 {
        return Err(anyhow!(
            "--session-hours and --request-timeout-s must be at least 1"
        ));
    }
    radlens_server::serve(&cfg, |addr, version| {
        println!("radlens workbench on http://{addr}/ (model {version}; Ctrl-C stops)");
    })
    .map_err(|e| anyhow!(e))
}

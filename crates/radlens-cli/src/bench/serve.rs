//! `radlens bench serve`: a loopback load test of the workbench. It starts the server on a
//! temporary database with one analysed film, signs one user in, and runs `--clients`
//! concurrent clients (each its own connection) for `--seconds`, each cycling through the
//! study list, the image (display pixels), the cached draft and, given `--sae-run`, an SAE
//! feature page (the most often firing latent among the first 100). Like a browser with the
//! page open, a client keeps each answer with its entity tag and revalidates it
//! (`If-None-Match`), so an unchanged page comes back 304 without a body; with `--cold`
//! clients keep nothing and every answer is sent in full. It prints requests, errors, 304s
//! and latency percentiles per endpoint, and the machine's load average before and after.
//! Clients and server share this machine's cores, so the latencies include the load the
//! clients themselves put on it.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use radlens_server::db::accounts::Role;
use radlens_server::db::records::{Job, JobState};
use reqwest::header::{HeaderMap, HeaderValue, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ServeBenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How long the clients run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The film the server analyses and serves.
    #[arg(long, default_value = "../shared/data/jsrt/images/JPCLN001.png")]
    film: PathBuf,
    /// Anatomy model run folder.
    #[arg(long, default_value = crate::MEASUREMENT_MODEL)]
    model: PathBuf,
    /// SSN samples of the one analysis (only its set-up time depends on it).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Clients keep no cache: no entity tags, every answer sent in full.
    #[arg(long)]
    cold: bool,
    /// An SAE run folder (with its `features.sqlite`): clients also open a feature page.
    #[arg(long)]
    sae_run: Option<PathBuf>,
}

/// Latents the bench looks through for the feature page it loads.
const FEATURE_CANDIDATES: usize = 100;

/// One finished request.
struct Sample {
    endpoint: usize,
    latency: Duration,
    ok: bool,
    /// Answered 304 Not Modified.
    revalidated: bool,
}

/// The 1-minute load average, from /proc/loadavg (Linux).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(a: &ServeBenchArgs) -> Result<()> {
    if a.clients == 0 || a.seconds == 0 {
        bail!("--clients and --seconds must be positive");
    }
    let film = std::fs::read(&a.film).with_context(|| format!("--film {}", a.film.display()))?;
    let dir = tempfile::tempdir().context("temporary folder")?;
    let cfg = radlens_server::Config {
        db: dir.path().join("bench.sqlite"),
        bind: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        model: a.model.clone(),
        samples: a.samples,
        seed: 0,
        max_upload: 64 << 20,
        session_ttl: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(30),
        secure_cookie: false,
        sae_runs: a.sae_run.iter().cloned().collect(),
        lm_model: None,
    };
    let password = "bench password, not secret";
    {
        let db = radlens_server::db::Db::open(&cfg.db).map_err(|e| anyhow!(e))?;
        radlens_server::auth::add_user(&db, "bench", password, Role::Radiologist)
            .map_err(|e| anyhow!(e))?;
    }
    let server = radlens_server::Running::start(cfg).map_err(|e| anyhow!(e))?;
    let base = format!("http://{}", server.addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (endpoints, samples, load_before) = rt.block_on(load(a, &base, film, password))?;
    let load_after = load_average();
    drop(server);

    println!(
        "{} clients for {} s on loopback, {} ({} requests in all); load average {load_before} before, {load_after} after",
        a.clients,
        a.seconds,
        if a.cold { "cold clients" } else { "clients revalidating" },
        samples.len()
    );
    println!(
        "{:<14} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "requests", "errors", "304s", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (k, name) in endpoints.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.endpoint == k).collect();
        let errors = mine.iter().filter(|s| !s.ok).count();
        let revalidated = mine.iter().filter(|s| s.revalidated).count();
        let mut ms: Vec<f64> = mine.iter().map(|s| s.latency.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{name:<14} {:>9} {errors:>7} {revalidated:>7} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            ms.len(),
            ms.len() as f64 / a.seconds as f64,
            nearest_rank(&ms, 0.50),
            nearest_rank(&ms, 0.95),
            nearest_rank(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// Sign in, upload and analyse the film, then run the clients: the endpoints' names, the
/// samples, and the load average when they start.
async fn load(
    a: &ServeBenchArgs,
    base: &str,
    film: Vec<u8>,
    password: &str,
) -> Result<(Vec<String>, Vec<Sample>, String)> {
    let anon = reqwest::Client::new();
    let r = anon
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({"username": "bench", "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow!("login set no cookie"))?
        .to_string();
    let me: radlens_server::auth::Me = r.json().await?;
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(&cookie)?);
    headers.insert("x-csrf-token", HeaderValue::from_str(&me.csrf_token)?);
    let client = || {
        reqwest::Client::builder()
            .default_headers(headers.clone())
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
    };
    let c = client()?;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(film).file_name("bench.png"),
        )
        .text("patient_id", "BENCH-1");
    let created: radlens_server::api::Created = c
        .post(format!("{base}/api/studies"))
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    loop {
        let j: Job = c
            .get(format!("{base}/api/jobs/{}", created.job.id))
            .send()
            .await?
            .json()
            .await?;
        match j.state {
            JobState::Done => break,
            JobState::Failed => bail!("the analysis failed: {:?}", j.error),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let id = created.id;
    let mut endpoints: Vec<(String, String)> = [
        ("study list", format!("{base}/api/studies")),
        ("image pixels", format!("{base}/api/studies/{id}/pixels")),
        ("cached draft", format!("{base}/api/studies/{id}/draft")),
    ]
    .map(|(n, u)| (n.to_string(), u))
    .into();
    if a.sae_run.is_some() {
        let url = feature_page(&c, base).await?;
        endpoints.push(("feature page".into(), url));
    }
    let urls: Vec<String> = endpoints.iter().map(|(_, u)| u.clone()).collect();
    let load_before = load_average();
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let (c, urls, cold) = (client()?, urls.clone(), a.cold);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut etags: Vec<Option<HeaderValue>> = vec![None; urls.len()];
            // clients start at different endpoints so each is always under load
            let mut k = i % urls.len();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = c.get(&urls[k]);
                if let Some(tag) = &etags[k] {
                    req = req.header(IF_NONE_MATCH, tag.clone());
                }
                let (ok, revalidated) = match req.send().await {
                    Ok(r) if r.status() == StatusCode::NOT_MODIFIED => (etags[k].is_some(), true),
                    Ok(r) if r.status().is_success() => {
                        let tag = r.headers().get(ETAG).cloned();
                        let ok = r.bytes().await.is_ok();
                        if ok && !cold {
                            etags[k] = tag;
                        }
                        (ok, false)
                    }
                    _ => (false, false),
                };
                out.push(Sample {
                    endpoint: k,
                    latency: t.elapsed(),
                    ok,
                    revalidated,
                });
                k = (k + 1) % urls.len();
            }
            out
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    Ok((
        endpoints.into_iter().map(|(n, _)| n).collect(),
        samples,
        load_before,
    ))
}

/// The URL of the feature page of the SAE run's most often firing latent among its
/// first [`FEATURE_CANDIDATES`].
async fn feature_page(c: &reqwest::Client, base: &str) -> Result<String> {
    use radlens_interp::feature_db::Feature;
    let runs: Vec<radlens_server::features::RunInfo> = c
        .get(format!("{base}/api/features"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let run = runs
        .first()
        .ok_or_else(|| anyhow!("the server lists no SAE run"))?;
    let mut best = (0, 0);
    for i in 0..run.latents.min(FEATURE_CANDIDATES) {
        let f: Feature = c
            .get(format!("{base}/api/features/{}/{i}", run.name))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if f.fires > best.1 {
            best = (i, f.fires);
        }
    }
    Ok(format!("{base}/api/features/{}/{}", run.name, best.0))
}

/// The nearest-rank percentile of sorted values (NaN when empty).
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn nearest_rank_by_hand() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), 50.0);
        assert_eq!(nearest_rank(&v, 0.95), 95.0);
        assert_eq!(nearest_rank(&v, 0.99), 99.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        assert!(nearest_rank(&[], 0.5).is_nan());
    }
}

//! `radlens lm serve`: the OpenAI-compatible chat server (radlens-interp's `serve`).

use anyhow::{Context, Result};
use clap::Args;
use radlens_interp::inputs::{load_model, model_name};
use radlens_interp::serve::{run_until_ctrl_c, ServeConfig, Server};
use radlens_interp::steer::HookedSae;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// LLaMA-family GGUF model file.
    #[arg(
        long,
        default_value = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// SAE directory enabling the `radlens` extension (steering, splicing).
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Layer the SAE reads, for an SAE without train.json.
    #[arg(long, requires = "sae")]
    layer: Option<usize>,
    /// Largest max_tokens a request may ask for.
    #[arg(long, default_value_t = 1024)]
    max_tokens_limit: usize,
    /// max_tokens of requests that give none.
    #[arg(long, default_value_t = 256)]
    default_max_tokens: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Generations running at once (default: the number of cores).
    #[arg(long)]
    parallel: Option<usize>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let lm = Arc::new(load_model(&args.model)?);
    let sae = args
        .sae
        .as_deref()
        .map(|dir| HookedSae::load(dir, &args.model, args.layer))
        .transpose()?;
    let defaults = ServeConfig::new(model_name(&args.model));
    let cfg = ServeConfig {
        max_tokens_limit: args.max_tokens_limit,
        default_max_tokens: args.default_max_tokens,
        max_body_bytes: args.max_body_bytes,
        parallel: args.parallel.unwrap_or(defaults.parallel),
        ..defaults
    };
    let id = cfg.model_id.clone();
    let server = Arc::new(Server::new(lm, sae, cfg)?);
    run_until_ctrl_c(server, args.bind, |addr| {
        eprintln!("serving {id} at http://{addr}/v1 (Ctrl-C stops)");
    })
    .context("lm serve")
}

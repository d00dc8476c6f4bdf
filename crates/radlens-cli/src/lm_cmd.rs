//! `radlens lm ...`: run the hookable GGUF language model (generation from the command line).

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use radlens_lm::{GenerationConfig, Hooks, LanguageModel, Message, WeightFormat};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum LmCommand {
    /// Generate text from a prompt, streaming it to stdout (speed report on stderr).
    Generate(GenerateArgs),
    /// Serve the model over an OpenAI-compatible chat-completions API.
    Serve(crate::lm_serve_cmd::ServeArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// LLaMA-family GGUF model file.
    #[arg(
        long,
        default_value = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    model: PathBuf,
    /// The user message (or, with --raw, the whole prompt).
    #[arg(long)]
    prompt: String,
    /// System prompt (default: the one in the model's chat template).
    #[arg(long, conflicts_with = "raw")]
    system: Option<String>,
    /// Feed the prompt as-is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 299_792_458)]
    seed: u64,
    /// Keep the GGUF's quantized weights (less memory, 8-bit activations in matmuls)
    /// instead of dequantizing them to f32.
    #[arg(long)]
    quantized: bool,
}

pub fn run(cmd: LmCommand) -> Result<()> {
    match cmd {
        LmCommand::Generate(args) => generate(args),
        LmCommand::Serve(args) => crate::lm_serve_cmd::run(args),
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    let format = if args.quantized {
        WeightFormat::Quantized
    } else {
        WeightFormat::F32
    };
    let lm = LanguageModel::load(&args.model, &Device::Cpu, format)?;
    let text = if args.raw {
        args.prompt.clone()
    } else {
        let mut messages = Vec::new();
        messages.extend(args.system.clone().map(Message::system));
        messages.push(Message::user(args.prompt.clone()));
        lm.chat.render(&messages, true)
    };
    let prompt = lm.tokenizer.encode(&text)?;
    let cfg = GenerationConfig {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        ..GenerationConfig::default()
    };
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    let out = lm.generate(&prompt, &cfg, &mut Hooks::new(), |piece| {
        if write_err.is_none() {
            write_err = stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
                .err();
        }
    })?;
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    writeln!(stdout).context("writing to stdout")?;
    eprintln!(
        "[{} prompt tokens, prefill {:.2}s; {} new tokens, {:.1} tokens/s; stop: {:?}]",
        out.prompt_tokens,
        out.prefill_time.as_secs_f64(),
        out.tokens.len(),
        out.tokens_per_second(),
        out.stop
    );
    Ok(())
}

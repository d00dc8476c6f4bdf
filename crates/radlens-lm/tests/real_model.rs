//! End-to-end tests against the real SmolLM2-135M-Instruct GGUF in `shared/models`.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use radlens_lm::{
    GenerationConfig, HookPoint, HookedLlama, Hooks, KvCache, LanguageModel, LlamaConfig, LmError,
    Positions, StopReason, WeightFormat,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const HIDDEN: usize = 576;
const LAYERS: usize = 30;
const SENTENCE: &str =
    "The cardiac silhouette and mediastinum size are within normal limits. No pneumothorax.";

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn model_path() -> PathBuf {
    shared().join("models").join(MODEL_FILE)
}

/// The model is loaded once and shared by all tests, which run at the same time.
fn lm() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| LanguageModel::load(model_path(), &Device::Cpu, WeightFormat::F32).unwrap())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn last_row(logits: &Tensor) -> Tensor {
    let n = logits.dim(0).unwrap();
    logits.get(n - 1).unwrap()
}

/// Logits of `tokens` as a new sequence.
fn logits(model: &HookedLlama, tokens: &[u32], hooks: &mut Hooks) -> Tensor {
    model
        .forward(tokens, &mut model.new_cache(), hooks)
        .unwrap()
}

#[test]
fn config_is_read_from_metadata() {
    let lm = lm();
    let c = lm.model.config();
    assert_eq!(c.architecture, "llama");
    assert_eq!(
        (
            c.n_layers,
            c.hidden_size,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim
        ),
        (LAYERS, HIDDEN, 9, 3, 64)
    );
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.context_length, 8192);
    assert_eq!(c.rope_freq_base, 100_000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert_eq!(lm.tokenizer.vocab_size(), 49_152);
}

/// Last-position logits of candle-transformers' `quantized_llama` for `tokens`, fed whole
/// and (second value) in two chunks split at `split` through its KV cache.
fn reference_logits(tokens: &[u32], split: usize) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(model_path()).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut reference = ModelWeights::from_gguf(content, &mut file, &dev).unwrap();
    let input = |t: &[u32]| Tensor::new(t, &dev).unwrap().unsqueeze(0).unwrap();
    let full = reference
        .forward(&input(tokens), 0)
        .unwrap()
        .squeeze(0)
        .unwrap();
    reference.clear_kv_cache();
    reference.forward(&input(&tokens[..split]), 0).unwrap();
    let chunked = reference
        .forward(&input(&tokens[split..]), split)
        .unwrap()
        .squeeze(0)
        .unwrap();
    (full, chunked)
}

/// Our hook-free last-position logits, fed whole and in two chunks.
fn our_logits(model: &HookedLlama, tokens: &[u32], split: usize) -> (Tensor, Tensor) {
    let full = last_row(&logits(model, tokens, &mut Hooks::new()));
    let mut cache = model.new_cache();
    model
        .forward(&tokens[..split], &mut cache, &mut Hooks::new())
        .unwrap();
    let chunked = model
        .forward(&tokens[split..], &mut cache, &mut Hooks::new())
        .unwrap();
    (full, last_row(&chunked))
}

fn check_agreement(label: &str, ours: &(Tensor, Tensor), reference: &(Tensor, Tensor)) {
    let scale: f32 = reference
        .0
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let d_full = max_abs_diff(&ours.0, &reference.0);
    let d_chunked = max_abs_diff(&ours.1, &reference.1);
    eprintln!(
        "{label}: max |logit| {scale:.3}, max abs diff full {d_full:.3e}, chunked (KV cache) {d_chunked:.3e}"
    );
    assert!(
        d_full <= 1e-3 * scale,
        "{label}: full-prompt diff {d_full} (scale {scale})"
    );
    assert!(
        d_chunked <= 1e-3 * scale,
        "{label}: chunked diff {d_chunked} (scale {scale})"
    );
}

/// Our hook-free forward agrees with candle-transformers' `quantized_llama`, in both
/// weight formats, for a whole prompt and for a prompt fed in two chunks.
#[test]
fn logits_match_candle_transformers_reference() {
    let tokens = lm().tokenizer.encode(SENTENCE).unwrap();
    assert!(tokens.len() >= 15, "{} tokens", tokens.len());
    let split = tokens.len() - 4;

    // Quantized weights: the reference's default numerics (8-bit activations in matmuls).
    let reference_q = reference_logits(&tokens, split);
    let quantized = HookedLlama::load(model_path(), &Device::Cpu, WeightFormat::Quantized).unwrap();
    let ours_q = our_logits(&quantized, &tokens, split);
    check_agreement("quantized weights", &ours_q, &reference_q);

    // f32 weights: candle reads CANDLE_DEQUANTIZE_ALL once per thread, so the dequantized
    // reference is built on a fresh thread. Our model never consults this variable.
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let tokens_f32 = tokens.clone();
    let reference_f32 = std::thread::spawn(move || reference_logits(&tokens_f32, split))
        .join()
        .unwrap();
    std::env::remove_var("CANDLE_DEQUANTIZE_ALL");
    let ours_f32 = our_logits(&lm().model, &tokens, split);
    check_agreement("f32 weights", &ours_f32, &reference_f32);
}

#[test]
fn capture_and_identity_hooks() {
    let lm = lm();
    let tokens = lm.tokenizer.encode(SENTENCE).unwrap();
    let layer = 12;
    let point = HookPoint::ResidPost(layer);
    let base = logits(&lm.model, &tokens, &mut Hooks::new());

    // Read: captures (tokens, hidden) without changing the output.
    let mut hooks = Hooks::new();
    hooks.capture(point).capture(HookPoint::ResidPre(layer + 1));
    let with_capture = logits(&lm.model, &tokens, &mut hooks);
    assert_eq!(max_abs_diff(&base, &with_capture), 0.0);
    let captured = hooks.store().get(point).unwrap().unwrap();
    assert_eq!(captured.dims(), &[tokens.len(), HIDDEN]);
    let next_pre = hooks
        .store()
        .get(HookPoint::ResidPre(layer + 1))
        .unwrap()
        .unwrap();
    assert_eq!(max_abs_diff(&captured, &next_pre), 0.0);

    // Replace with the captured value: logits unchanged.
    let mut hooks = Hooks::new();
    let saved = captured.clone();
    hooks.replace(point, move |_, _| Ok(saved.clone()));
    let replaced = logits(&lm.model, &tokens, &mut hooks);
    assert_eq!(max_abs_diff(&base, &replaced), 0.0);

    // Add a zero vector: unchanged; a non-zero one: changed.
    let zero = Tensor::zeros(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut hooks = Hooks::new();
    hooks.add(point, zero, 5.0, Positions::All);
    let added_zero = logits(&lm.model, &tokens, &mut hooks);
    assert_eq!(max_abs_diff(&base, &added_zero), 0.0);

    let direction = captured.get(tokens.len() - 1).unwrap();
    let last = tokens.len() - 1;
    let mut hooks = Hooks::new();
    hooks.add(point, direction, 4.0, Positions::Range(last..last + 1));
    let steered = logits(&lm.model, &tokens, &mut hooks);
    let earlier = tokens.len() - 2;
    assert_eq!(
        max_abs_diff(&base.get(earlier).unwrap(), &steered.get(earlier).unwrap()),
        0.0,
        "positions before the steered one must not change (causal)"
    );
    let d = max_abs_diff(&last_row(&base), &last_row(&steered));
    assert!(d > 0.1, "steering changed the last logits by only {d}");
}

#[test]
fn residual_at_equals_the_captured_full_forward() {
    let lm = lm();
    let tokens = lm.tokenizer.encode(SENTENCE).unwrap();
    for point in [HookPoint::ResidPost(15), HookPoint::ResidPre(0)] {
        let mut hooks = Hooks::new();
        hooks.capture(point);
        logits(&lm.model, &tokens, &mut hooks);
        let full = hooks.store().get(point).unwrap().unwrap();
        let early = lm
            .model
            .residual_at(&tokens, point, &mut Hooks::new())
            .unwrap();
        assert_eq!(max_abs_diff(&full, &early), 0.0, "{point}");
    }
    let err = lm
        .model
        .residual_at(&tokens, HookPoint::ResidPost(LAYERS), &mut Hooks::new())
        .unwrap_err();
    assert!(err.to_string().contains("resid_post.30"), "{err}");
}

#[test]
fn hook_layer_out_of_range_is_an_error() {
    let lm = lm();
    let tokens = lm.tokenizer.encode("No acute disease.").unwrap();
    let mut cache = lm.model.new_cache();
    let mut hooks = Hooks::new();
    hooks.capture(HookPoint::ResidPost(LAYERS));
    let err = lm
        .model
        .forward(&tokens, &mut cache, &mut hooks)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LmError::HookOutOfRange {
                n_layers: LAYERS,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("resid_post.30"), "{err}");
    assert_eq!(
        cache.position(),
        0,
        "a rejected call must not advance the cache"
    );

    // A hook that fails mid-forward leaves the cache as it was, even in a later call.
    let mut failing = Hooks::new();
    failing.replace(HookPoint::ResidPre(3), |_, x| x.narrow(0, 0, 1));
    let err = lm
        .model
        .forward(&tokens, &mut cache, &mut failing)
        .unwrap_err();
    assert!(err.to_string().contains("resid_pre.3"), "{err}");
    assert_eq!(cache.position(), 0);
    let (head, tail) = tokens.split_at(2);
    lm.model
        .forward(head, &mut cache, &mut Hooks::new())
        .unwrap();
    lm.model
        .forward(tail, &mut cache, &mut failing)
        .unwrap_err();
    assert_eq!(cache.position(), head.len());
    let resumed = lm
        .model
        .forward(tail, &mut cache, &mut Hooks::new())
        .unwrap();
    assert_eq!(cache.position(), tokens.len());
    let clean = step_logits(&lm.model, &[head, tail]);
    assert_eq!(resumed.to_vec2::<f32>().unwrap(), clean[1]);

    // A cache made for another model is refused.
    let tiny = LlamaConfig {
        n_layers: 2,
        ..lm.model.config().clone()
    };
    let err = lm
        .model
        .forward(&tokens, &mut KvCache::new(&tiny), &mut Hooks::new())
        .unwrap_err();
    assert!(err.to_string().contains("2 layers"), "{err}");
}

/// The logits of each chunk of `chunks`, fed one after the other as one new sequence.
fn step_logits(model: &HookedLlama, chunks: &[&[u32]]) -> Vec<Vec<Vec<f32>>> {
    let mut cache = model.new_cache();
    chunks
        .iter()
        .map(|c| {
            let x = model.forward(c, &mut cache, &mut Hooks::new()).unwrap();
            x.to_vec2().unwrap()
        })
        .collect()
}

/// A prompt chunk, then one token at a time (as in generation).
fn generation_chunks(tokens: &[u32]) -> Vec<&[u32]> {
    let (prompt, rest) = tokens.split_at(5);
    std::iter::once(prompt).chain(rest.chunks(1)).collect()
}

/// One shared model runs two sequences at once, each in its own cache, and each gets
/// exactly the logits it gets alone: interleaved token by token on one thread, and on
/// two threads.
#[test]
fn caches_interleaved_on_one_model_match_sequences_alone() {
    let lm = lm();
    let model = &lm.model;
    let a = lm.tokenizer.encode(SENTENCE).unwrap();
    let b = lm
        .tokenizer
        .encode("Heart size is mildly enlarged. Small left pleural effusion.")
        .unwrap();
    let (chunks_a, chunks_b) = (generation_chunks(&a), generation_chunks(&b));
    let alone_a = step_logits(model, &chunks_a);
    let alone_b = step_logits(model, &chunks_b);

    let (mut cache_a, mut cache_b) = (model.new_cache(), model.new_cache());
    let run = |cache: &mut KvCache, chunk: &[u32]| -> Vec<Vec<f32>> {
        let x = model.forward(chunk, cache, &mut Hooks::new()).unwrap();
        x.to_vec2().unwrap()
    };
    for i in 0..chunks_a.len().max(chunks_b.len()) {
        if let Some(c) = chunks_a.get(i) {
            assert_eq!(run(&mut cache_a, c), alone_a[i], "a, step {i}");
        }
        if let Some(c) = chunks_b.get(i) {
            assert_eq!(run(&mut cache_b, c), alone_b[i], "b, step {i}");
        }
    }
    assert_eq!((cache_a.position(), cache_b.position()), (a.len(), b.len()));

    let (threaded_a, threaded_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| step_logits(model, &chunks_a));
        let tb = s.spawn(|| step_logits(model, &chunks_b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(threaded_a == alone_a, "sequence a differs on a thread");
    assert!(threaded_b == alone_b, "sequence b differs on a thread");
}

/// SmolLM2's GGUF has EOS = `<|im_end|>` and no EOT id; its ChatML template adds
/// `<|endoftext|>`: the stop set generation has always used for it.
#[test]
fn stop_tokens_come_from_the_metadata_and_template() {
    let lm = lm();
    let t = &lm.tokenizer;
    let (im_end, end_of_text) = (
        t.token_id("<|im_end|>").unwrap(),
        t.token_id("<|endoftext|>").unwrap(),
    );
    assert_eq!((t.eos_id(), t.eot_id()), (Some(im_end), None));
    assert_eq!(lm.chat.stop_markers(), ["<|im_end|>", "<|endoftext|>"]);
    assert_eq!(lm.stop_tokens(), [im_end, end_of_text]);
}

fn report_texts(n: usize) -> Vec<String> {
    let path = shared().join("data/iu-xray/indiana_reports.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (findings, impression) = (col("findings"), col("impression"));
    reader
        .records()
        .take(n)
        .map(|r| {
            let r = r.unwrap();
            format!("Findings: {}\nImpression: {}", &r[findings], &r[impression])
        })
        .collect()
}

#[test]
fn tokenizer_round_trips_radiology_reports() {
    let lm = lm();
    let reports = report_texts(300);
    assert_eq!(reports.len(), 300);
    for text in &reports {
        let ids = lm.tokenizer.encode(text).unwrap();
        assert_eq!(&lm.tokenizer.decode(&ids, false).unwrap(), text);
    }
    let odd = "T12 fracture — 3.5 cm, ≤2 mm; “quoted”  double  spaces\n\n\ttab 😀 <|im_end|>";
    let ids = lm.tokenizer.encode(odd).unwrap();
    assert_eq!(lm.tokenizer.decode(&ids, false).unwrap(), odd);
}

#[test]
fn tokenizer_known_ids() {
    let lm = lm();
    let t = &lm.tokenizer;
    // Ids straight from the GGUF vocabulary order.
    assert_eq!(t.token_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.special_ids().len(), 17);

    // Special tokens are single ids; "user" and "\n" are whole vocabulary entries.
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    let user = t.token_id("user").unwrap();
    let newline = t.token_id("Ċ").unwrap();
    assert_eq!(&ids[..3], &[1, user, newline]);
    assert_eq!(*ids.last().unwrap(), 2);

    // Byte-level spelling: a leading space is 'Ġ'.
    let world = t.token_id("Ġworld").unwrap();
    assert_eq!(t.encode(" world").unwrap(), vec![world]);
    let hello = t.token_id("Hello").unwrap();
    assert_eq!(t.encode("Hello world").unwrap(), vec![hello, world]);

    // SmolLM splits numbers into single digits.
    let digits: Vec<u32> = "2024"
        .chars()
        .map(|c| t.token_id(&c.to_string()).unwrap())
        .collect();
    assert_eq!(t.encode("2024").unwrap(), digits);
    assert_eq!(t.decode(&ids, true).unwrap(), "user\nHi");

    // Regression pin: the default system turn of the chat template.
    let system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    assert_eq!(
        t.encode(system).unwrap(),
        [
            1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
            407, 19712, 8182, 2, 198
        ]
    );
}

#[test]
fn greedy_chat_answers_paris() {
    let lm = lm();
    let prompt = lm.chat_prompt("What is the capital of France?").unwrap();
    let cfg = GenerationConfig {
        max_tokens: 24,
        ..GenerationConfig::default()
    };
    let mut streamed = String::new();
    let out = lm
        .generate(&prompt, &cfg, &mut Hooks::new(), |s| streamed.push_str(s))
        .unwrap();
    eprintln!(
        "greedy: {:?} ({} prompt tokens, prefill {:?}, {:.1} tokens/s)",
        out.text,
        out.prompt_tokens,
        out.prefill_time,
        out.tokens_per_second()
    );
    assert!(out.text.contains("Paris"), "{:?}", out.text);
    assert_eq!(streamed, out.text);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let lm = lm();
    let prompt = lm.chat_prompt("Describe a normal chest X-ray.").unwrap();
    let cfg = GenerationConfig {
        max_tokens: 12,
        temperature: 0.8,
        top_p: 0.9,
        seed: 7,
        ..GenerationConfig::default()
    };
    let a = lm
        .generate(&prompt, &cfg, &mut Hooks::new(), |_| {})
        .unwrap();
    let b = lm
        .generate(&prompt, &cfg, &mut Hooks::new(), |_| {})
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.stop, StopReason::MaxTokens);
    assert_eq!(a.tokens.len(), 12);

    let bad = GenerationConfig { top_p: 0.0, ..cfg };
    let err = lm
        .generate(&prompt, &bad, &mut Hooks::new(), |_| {})
        .unwrap_err();
    assert!(matches!(err, LmError::InvalidArgument(_)), "{err}");
}

#[test]
fn truncated_and_non_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..1 << 20]).unwrap();
    let err = LanguageModel::load(&truncated, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(
        matches!(err, LmError::InvalidGguf { .. } | LmError::Tensor { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("truncated.gguf"), "{err}");

    let csv = dir.path().join("reports.csv");
    std::fs::write(&csv, "uid,findings\n1,normal\n").unwrap();
    let err = LanguageModel::load(&csv, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(matches!(err, LmError::InvalidGguf { .. }), "{err}");
    assert!(err.to_string().contains("reports.csv"), "{err}");

    let missing = dir.path().join("missing.gguf");
    let err = LanguageModel::load(&missing, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(matches!(err, LmError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}

fn write_gguf(path: &Path, metadata: &[(&str, gguf_file::Value)]) {
    let mut file = std::fs::File::create(path).unwrap();
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut file, &md, &[]).unwrap();
}

#[test]
fn unsupported_architecture_and_missing_tensors_are_clear_errors() {
    use gguf_file::Value;
    let dir = tempfile::tempdir().unwrap();

    let gpt2 = dir.path().join("gpt2.gguf");
    write_gguf(
        &gpt2,
        &[("general.architecture", Value::String("gpt2".into()))],
    );
    let err = LanguageModel::load(&gpt2, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(matches!(err, LmError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("gpt2.gguf") && err.to_string().contains("`gpt2`"),
        "{err}"
    );

    let empty_llama = dir.path().join("no_tensors.gguf");
    write_gguf(
        &empty_llama,
        &[
            ("general.architecture", Value::String("llama".into())),
            ("llama.block_count", Value::U32(2)),
            ("llama.embedding_length", Value::U32(64)),
            ("llama.feed_forward_length", Value::U32(128)),
            ("llama.attention.head_count", Value::U32(4)),
            ("llama.attention.head_count_kv", Value::U32(2)),
            ("llama.context_length", Value::U32(32)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ],
    );
    let err = LanguageModel::load(&empty_llama, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(matches!(err, LmError::Tensor { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no_tensors.gguf") && msg.contains("token_embd.weight"),
        "{msg}"
    );

    let no_layers = dir.path().join("no_block_count.gguf");
    write_gguf(
        &no_layers,
        &[("general.architecture", Value::String("llama".into()))],
    );
    let err = LanguageModel::load(&no_layers, &Device::Cpu, WeightFormat::F32)
        .err()
        .unwrap();
    assert!(err.to_string().contains("llama.block_count"), "{err}");
}

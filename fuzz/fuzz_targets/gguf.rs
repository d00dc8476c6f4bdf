//! GGUF header, metadata and tensor index, then the LLaMA hyper-parameters, the tokenizer
//! and a few tensors by name.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // radlens turns a panic in candle's GGUF header reader into an error
        // (catch_unwind); libfuzzer-sys' hook would abort on it first. This hook only
        // prints: a panic that escapes radlens still aborts the run.
        std::panic::set_hook(Box::new(|info| eprintln!("caught by radlens: {info}")));
    },
    |data: &[u8]| {
        let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.gguf");
        std::fs::write(&path, data).unwrap();
        let Ok(mut gguf) = radlens_lm::GgufFile::open(&path) else {
            return;
        };
        let _ = radlens_lm::LlamaConfig::from_gguf(&gguf);
        let _ = radlens_lm::Tokenizer::from_gguf(&gguf);
        for name in ["token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight"] {
            let _ = gguf.tensor(name, &candle_core::Device::Cpu);
        }
    }
);

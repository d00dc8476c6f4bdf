//! SAELens layout: cfg.json (first part, up to a NUL byte) and sae_weights.safetensors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    std::fs::write(dir.join("cfg.json"), &data[..split]).unwrap();
    std::fs::write(
        dir.join("sae_weights.safetensors"),
        data.get(split + 1..).unwrap_or(&[]),
    )
    .unwrap();
    let _ = radlens_sae::formats::load_saelens(&dir);
});

//! dictionary_learning layout: config.json (first part, up to a NUL byte) and ae.pt.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    std::fs::write(dir.join("config.json"), &data[..split]).unwrap();
    std::fs::write(dir.join("ae.pt"), data.get(split + 1..).unwrap_or(&[])).unwrap();
    let _ = radlens_sae::formats::load_dictionary_learning(&dir);
});

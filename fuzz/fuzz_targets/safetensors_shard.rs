//! An activation store with one fuzzed safetensors shard: header, then tensors and token records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        br#"{"d_model":4,"layer":0,"model":"fuzz","complete":true}"#,
    )
    .unwrap();
    std::fs::write(dir.join("acts_00000.safetensors"), data).unwrap();
    let Ok(store) = radlens_sae::ActivationStore::open(&dir) else {
        return;
    };
    let _ = store.read_shard_with_tokens(0);
});

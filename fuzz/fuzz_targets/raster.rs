//! PNG/JPEG (8/16-bit, grey/colour) read through radlens' image reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = tmp("image");
    std::fs::write(&path, data).unwrap();
    let _ = radlens_io::read_image(&path);
});

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

//! covid-cxr: structure.csv (up to a NUL byte) and metadata.csv, then the first sample's
//! label map (whose canvas size comes from the CSV). Rows may name the image `x.jpg` and
//! the mask `masks/m.png`, which exist.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("radlens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("masks/m.png"), MASK).unwrap();
    std::fs::write(dir.join("images/x.jpg"), b"").unwrap();
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    std::fs::write(dir.join("structure.csv"), &data[..split]).unwrap();
    std::fs::write(
        dir.join("metadata.csv"),
        data.get(split + 1..).unwrap_or(&[]),
    )
    .unwrap();
    let Ok(ds) = radlens_io::dataset::covid::open(&dir, true) else {
        return;
    };
    if let Some(s) = ds.samples.first() {
        let _ = s.load_labels((8, 8));
    }
});

/// A 2x2 white 8-bit PNG, the crop every fuzzed row may point at.
const MASK: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57, 0xdd, 0x52,
    0xf8, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xff, 0x9f, 0xe1,
    0xff, 0x3f, 0x00, 0x07, 0xfe, 0x02, 0xfe, 0xa7, 0x35, 0x81, 0x84, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

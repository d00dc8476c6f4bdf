//! The JSRT clinical tables (nodule and non-nodule layouts).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = Path::new("CLNDAT_EN.txt");
    let _ = radlens_io::dataset::jsrt::parse_nodule_table(&text, p);
    let _ = radlens_io::dataset::jsrt::parse_non_nodule_table(&text, p);
});

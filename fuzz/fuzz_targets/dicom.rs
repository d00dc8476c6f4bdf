//! DICOM open + decode of every view of the first, a middle and the last frame, and info.
#![no_main]
use libfuzzer_sys::fuzz_target;
use radlens_io::dicom::DicomFile;
use std::path::Path;

fuzz_target!(
    init: {
        // radlens turns panics inside dicom-rs and its codecs into errors (catch_unwind);
        // libfuzzer-sys' hook would abort on them first. This hook only prints: a panic
        // that escapes radlens still aborts the run (libfuzzer-sys catches it there).
        std::panic::set_hook(Box::new(|info| eprintln!("caught by radlens: {info}")));
    },
    |data: &[u8]| {
        let Ok(file) = DicomFile::from_bytes(Path::new("fuzz.dcm"), data) else {
            return;
        };
        let _ = file.info();
        let frames = file.layout().map_or(1, |l| l.frames);
        for frame in [0, frames / 2, frames.saturating_sub(1), frames] {
            let _ = file.display_frame(frame);
        }
    }
);

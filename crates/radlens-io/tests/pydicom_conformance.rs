//! Conformance with pydicom on the DICOM test files shipped inside the pydicom wheel (a
//! public corpus no one here wrote). `tools/dicom-conformance/run.sh` fetches the wheel,
//! makes the reference arrays with pydicom and its pylibjpeg/pyjpegls plugins
//! (`make_references.py`) into `.corpus/pydicom/` and runs this test.
//!
//! For every file pydicom decodes, radlens' stored values of the first and last frame must
//! equal pydicom's `pixel_array` exactly for lossless transfer syntaxes, and within
//! [`LOSSY_MAX_ABS`] / [`LOSSY_MEAN_ABS`] (fractions of the sample range) for lossy ones,
//! where decoders legitimately differ in IDCT/wavelet rounding; greyscale modality values
//! must equal pydicom's `apply_modality_lut`. Every other file (no pixel data, corrupt,
//! not DICOM) must get an error naming the file, and no file may panic.

use radlens_io::dicom::{DicomFile, RawFrame, StoredFrame};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest difference allowed on a lossy file, as a fraction of 2^bits.
const LOSSY_MAX_ABS: f64 = 0.02;
/// Largest mean absolute difference allowed on a lossy file, as a fraction of 2^bits.
const LOSSY_MEAN_ABS: f64 = 0.002;

/// Transfer syntaxes whose decoders may differ from pydicom's by rounding.
const LOSSY: [&str; 5] = [
    "1.2.840.10008.1.2.4.50",  // JPEG baseline
    "1.2.840.10008.1.2.4.51",  // JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.81",  // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.203", // HTJ2K (lossy allowed)
];

#[derive(Deserialize)]
struct Manifest {
    pydicom: String,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    file: String,
    status: String,
    #[serde(default)]
    transfer_syntax: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    frames: Vec<FrameRef>,
}

#[derive(Deserialize)]
struct FrameRef {
    frame: usize,
    stored: String,
    modality: Option<String>,
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RADLENS_DICOM_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.corpus/pydicom"));
    dir.join("refs/manifest.json").is_file().then_some(dir)
}

fn read_i64(path: &Path) -> Vec<f64> {
    let b = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "f64") {
        b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else {
        b.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    }
}

/// What happened to one file, for the summary and the failure list.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Outcome {
    Exact,
    WithinTolerance,
    ClearError,
    DecodedWherePydicomFails,
    Failed,
    Panicked,
}

fn compare(ours: &[f64], theirs: &[f64], bits: u16, lossy: bool) -> Result<Outcome, String> {
    if ours.len() != theirs.len() {
        return Err(format!(
            "{} values, pydicom has {}",
            ours.len(),
            theirs.len()
        ));
    }
    let diffs: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    if max == 0.0 {
        return Ok(Outcome::Exact);
    }
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let range = 2f64.powi(i32::from(bits));
    if lossy && max <= LOSSY_MAX_ABS * range && mean <= LOSSY_MEAN_ABS * range {
        return Ok(Outcome::WithinTolerance);
    }
    let first = diffs.iter().position(|&d| d > 0.0).unwrap();
    Err(format!(
        "max |diff| {max}, mean {mean:.4} ({} bits{}); first at sample {first}: {} vs pydicom {}",
        bits,
        if lossy {
            ", lossy"
        } else {
            ", lossless: must be exact"
        },
        ours[first],
        theirs[first]
    ))
}

fn check_decoded(path: &Path, refs: &Path, e: &Entry) -> Result<Outcome, String> {
    let file = DicomFile::open(path).map_err(|e| e.to_string())?;
    let lossy = LOSSY.contains(&e.transfer_syntax.as_str());
    let mut outcome = Outcome::Exact;
    for f in &e.frames {
        let s: StoredFrame = file.stored_frame(f.frame).map_err(|e| e.to_string())?;
        let ours: Vec<f64> = s.values.iter().map(|&v| v as f64).collect();
        let o = compare(&ours, &read_i64(&refs.join(&f.stored)), s.bits, lossy)
            .map_err(|m| format!("frame {} stored values: {m}", f.frame))?;
        outcome = outcome.max(o);
        if let Some(m) = &f.modality {
            let RawFrame::Grey { values, .. } =
                file.raw_frame(f.frame).map_err(|e| e.to_string())?
            else {
                return Err("radlens reads colour where pydicom reads greyscale".into());
            };
            let o = compare(&values, &read_i64(&refs.join(m)), s.bits, lossy)
                .map_err(|m| format!("frame {} modality values: {m}", f.frame))?;
            outcome = outcome.max(o);
        }
    }
    Ok(outcome)
}

/// Files pydicom does not decode must get an error that names the file.
fn check_refused(path: &Path, e: &Entry) -> Result<Outcome, String> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let result = DicomFile::open(path).and_then(|f| f.stored_frame(0));
    match result {
        Err(err) => {
            let msg = err.to_string();
            if msg.contains(&name) {
                Ok(Outcome::ClearError)
            } else {
                Err(format!("error does not name the file: {msg}"))
            }
        }
        Ok(_) if e.status == "pydicom_error" => Ok(Outcome::DecodedWherePydicomFails),
        Ok(_) => Err(format!("decoded a file pydicom reports as {}", e.status)),
    }
}

#[test]
fn radlens_matches_pydicom_on_its_test_files() {
    let Some(dir) = corpus_dir() else {
        assert!(
            std::env::var_os("RADLENS_REQUIRE_DICOM_CORPUS").is_none(),
            "RADLENS_REQUIRE_DICOM_CORPUS is set but .corpus/pydicom/refs/manifest.json is \
             missing: run tools/dicom-conformance/run.sh"
        );
        eprintln!("skipped: no pydicom corpus (run tools/dicom-conformance/run.sh)");
        return;
    };
    let refs = dir.join("refs");
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(refs.join("manifest.json")).unwrap())
            .unwrap();
    let mut outcomes: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for e in &manifest.entries {
        let path = dir.join("files").join(&e.file);
        let run = std::panic::catch_unwind(|| match e.status.as_str() {
            "decoded" => check_decoded(&path, &refs, e),
            _ => check_refused(&path, e),
        });
        let outcome = match run {
            Ok(Ok(o)) => o,
            Ok(Err(msg)) => {
                failures.push(format!(
                    "{} [{}] {}: {msg}",
                    e.file, e.status, e.transfer_syntax
                ));
                Outcome::Failed
            }
            Err(_) => {
                failures.push(format!("{}: PANIC", e.file));
                Outcome::Panicked
            }
        };
        if outcome == Outcome::DecodedWherePydicomFails {
            eprintln!("note: {} decodes here; pydicom: {}", e.file, e.reason);
        }
        *outcomes
            .entry(e.status.clone())
            .or_default()
            .entry(format!("{outcome:?}"))
            .or_default() += 1;
    }
    eprintln!(
        "pydicom {} corpus, {} files:",
        manifest.pydicom,
        manifest.entries.len()
    );
    for (status, counts) in &outcomes {
        eprintln!("  pydicom {status}: radlens {counts:?}");
    }
    assert!(
        failures.is_empty(),
        "{} files fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

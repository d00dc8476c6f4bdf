//! `radlens dicom info/export` on a DICOM file written byte by byte here (explicit VR
//! little endian, a CR chest film of 3 x 2 pixels).

#[allow(dead_code)] // helpers shared with the data-driven tests
mod common;

use common::{radlens, stderr};
use radlens_io::dicom::{DicomFile, DicomInfo};
use std::path::Path;

/// One explicit VR little endian element.
fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" { 0 } else { b' ' });
    }
    out.extend(group.to_le_bytes());
    out.extend(elem.to_le_bytes());
    out.extend(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN") {
        out.extend([0, 0]);
        out.extend((v.len() as u32).to_le_bytes());
    } else {
        out.extend((v.len() as u16).to_le_bytes());
    }
    out.extend(v);
}

/// A 3 x 2 MONOCHROME2 CR film, 16-bit, rescale intercept -1000, window 1000/2001.
fn write_film(path: &Path) {
    let ts = b"1.2.840.10008.1.2.1";
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(
        &mut meta,
        0x0002,
        0x0002,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.1",
    );
    element(&mut meta, 0x0002, 0x0003, b"UI", b"1.2.3.4");
    element(&mut meta, 0x0002, 0x0010, b"UI", ts);
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    element(
        &mut file,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    file.extend(meta);
    let us = |v: u16| v.to_le_bytes();
    element(
        &mut file,
        0x0008,
        0x0016,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.1",
    );
    element(&mut file, 0x0008, 0x0018, b"UI", b"1.2.3.4");
    element(&mut file, 0x0008, 0x0060, b"CS", b"CR");
    element(&mut file, 0x0010, 0x0020, b"LO", b"PAT-7");
    element(&mut file, 0x0018, 0x1164, b"DS", b"0.2\\0.25");
    element(&mut file, 0x0018, 0x5101, b"CS", b"PA");
    element(&mut file, 0x0028, 0x0002, b"US", &us(1));
    element(&mut file, 0x0028, 0x0004, b"CS", b"MONOCHROME2");
    element(&mut file, 0x0028, 0x0010, b"US", &us(2));
    element(&mut file, 0x0028, 0x0011, b"US", &us(3));
    element(&mut file, 0x0028, 0x0100, b"US", &us(16));
    element(&mut file, 0x0028, 0x0101, b"US", &us(12));
    element(&mut file, 0x0028, 0x0102, b"US", &us(11));
    element(&mut file, 0x0028, 0x0103, b"US", &us(0));
    element(&mut file, 0x0028, 0x1050, b"DS", b"1000");
    element(&mut file, 0x0028, 0x1051, b"DS", b"2001");
    element(&mut file, 0x0028, 0x1052, b"DS", b"-1000");
    element(&mut file, 0x0028, 0x1053, b"DS", b"1");
    let pixels: Vec<u8> = [0u16, 500, 1000, 2000, 3000, 4095]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    element(&mut file, 0x7FE0, 0x0010, b"OW", &pixels);
    std::fs::write(path, file).unwrap();
}

#[test]
fn info_prints_the_attributes_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let film = dir.path().join("film.dcm");
    write_film(&film);
    let o = radlens(&["dicom", "info", film.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: DicomInfo = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info.patient_id.as_deref(), Some("PAT-7"));
    assert_eq!(info.modality.as_deref(), Some("CR"));
    assert_eq!(info.view_position.as_deref(), Some("PA"));
    assert_eq!(
        (info.rows, info.columns, info.bits_stored),
        (Some(2), Some(3), Some(12))
    );
    assert_eq!(info.transfer_syntax.uid, "1.2.840.10008.1.2.1");
    let s = info.pixel_spacing.unwrap();
    assert_eq!((s.row_mm, s.col_mm), (0.2, 0.25));
    assert_eq!(
        info.window.map(|w| (w.center, w.width)),
        Some((1000.0, 2001.0))
    );

    let o = radlens(&["dicom", "info", film.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Explicit VR Little Endian") && text.contains("2 x 3"),
        "{text}"
    );
}

#[test]
fn export_writes_display_and_raw_pngs_and_refuses_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let film = dir.path().join("film.dcm");
    write_film(&film);
    let display = dir.path().join("display.png");
    let o = radlens(&[
        "dicom",
        "export",
        film.to_str().unwrap(),
        "--out",
        display.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = DicomFile::open(&film).unwrap().display_frame(0).unwrap();
    let got = radlens_io::read_image(&display).unwrap();
    assert_eq!((got.width, got.height), (3, 2));
    for (a, b) in got.pixels.iter().zip(&expected.pixels) {
        assert!((a - b).abs() <= 1.0 / 65535.0, "{a} vs {b}");
    }

    // Modality values -1000 .. 3095 are shifted by +1000 into the 16-bit PNG.
    let raw = dir.path().join("raw.png");
    let o = radlens(&[
        "dicom",
        "export",
        film.to_str().unwrap(),
        "--out",
        raw.to_str().unwrap(),
        "--raw",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("+1000"));
    let img = image_values(&raw);
    assert_eq!(img, vec![0, 500, 1000, 2000, 3000, 4095]);

    let o = radlens(&[
        "dicom",
        "export",
        film.to_str().unwrap(),
        "--out",
        raw.to_str().unwrap(),
        "--frame",
        "5",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("film.dcm") && e.contains("frame 5"), "{e}");
    let o = radlens(&[
        "dicom",
        "info",
        dir.path().join("none.dcm").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("none.dcm"));
}

/// The 16-bit samples of a greyscale PNG.
fn image_values(path: &Path) -> Vec<u16> {
    let img = radlens_io::read_image(path).unwrap();
    img.pixels
        .iter()
        .map(|&v| (v * 65535.0).round() as u16)
        .collect()
}

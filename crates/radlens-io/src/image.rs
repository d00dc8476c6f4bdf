//! Reading a radiograph from any supported file: the one place that tells DICOM from
//! PNG/JPEG and hands the file to the matching decoder.

use crate::error::{IoError, Result};
use crate::xray::XrayImage;
use crate::{dicom, raster};
use std::path::Path;

/// True when the file starts with a DICOM preamble ("DICM" at byte 128) or is named *.dcm.
pub fn is_dicom(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
    {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// Read a radiograph from PNG, JPEG (8 or 16 bit, grey or colour) or DICOM.
pub fn read_image(path: &Path) -> Result<XrayImage> {
    if !path.exists() {
        return Err(IoError::fs(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    if is_dicom(path) {
        dicom::read_dicom(path)
    } else {
        raster::read_raster(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::tests::write_test_dicom;

    #[test]
    fn dicom_is_recognised_by_its_preamble() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noext");
        write_test_dicom(&p, 3, 1, &[0, 50, 100], vec![], "MONOCHROME2");
        assert!(is_dicom(&p));
        assert_eq!(read_image(&p).unwrap().pixels, vec![0.0, 0.5, 1.0]);
        let png = dir.path().join("a.png");
        raster::write_gray_png(&png, 1, 1, &[255]).unwrap();
        assert!(!is_dicom(&png));
        assert_eq!(read_image(&png).unwrap().pixels, vec![1.0]);
    }

    #[test]
    fn corrupt_and_missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = read_image(&p).unwrap_err().to_string();
        assert!(e.contains("broken.png") && e.contains("decode"), "{e}");
        let e = read_image(&dir.path().join("none.jpg"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.jpg") && e.contains("not found"), "{e}");
        let p = dir.path().join("bad.dcm");
        std::fs::write(&p, vec![0u8; 300]).unwrap();
        let e = read_image(&p).unwrap_err().to_string();
        assert!(e.contains("bad.dcm") && e.contains("DICOM"), "{e}");
    }
}

//! Hand-computed cases for each step of the pipeline on files written here; the pydicom
//! corpus test (`tests/pydicom_conformance.rs`) covers the codecs on real files.

use super::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

fn us(tag: dicom_core::Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

/// Write an explicit VR little endian file with the image attributes given.
pub fn write_dicom(path: &Path, elements: Vec<DataElement<InMemDicomObject>>) {
    write_dicom_ts(path, elements, "1.2.840.10008.1.2.1")
}

/// Write a file in transfer syntax `ts`.
fn write_dicom_ts(path: &Path, elements: Vec<DataElement<InMemDicomObject>>, ts: &str) {
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
    ]);
    for e in elements {
        obj.put(e);
    }
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3.4.5");
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

/// Image Pixel attributes for `w` x `h`, `spp` samples of `bits` bits in `allocated`.
fn image_attrs(
    w: u16,
    h: u16,
    spp: u16,
    allocated: u16,
    bits: u16,
    signed: bool,
    photometric: &str,
) -> Vec<DataElement<InMemDicomObject>> {
    vec![
        us(tags::SAMPLES_PER_PIXEL, spp),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
        us(tags::ROWS, h),
        us(tags::COLUMNS, w),
        us(tags::BITS_ALLOCATED, allocated),
        us(tags::BITS_STORED, bits),
        us(tags::HIGH_BIT, bits - 1),
        us(tags::PIXEL_REPRESENTATION, u16::from(signed)),
    ]
}

fn pixel_data_bytes(bytes: Vec<u8>) -> DataElement<InMemDicomObject> {
    DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(bytes.into()))
}

/// Write a small uncompressed 16-bit (12 stored) greyscale DICOM.
pub fn write_test_dicom(
    path: &Path,
    w: u16,
    h: u16,
    pixels: &[u16],
    extra: Vec<DataElement<InMemDicomObject>>,
    photometric: &str,
) {
    let mut e = image_attrs(w, h, 1, 16, 12, false, photometric);
    e.push(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.iter().copied().collect()),
    ));
    e.extend(extra);
    write_dicom(path, e);
}

fn lut_item(descriptor: [u16; 3], data: Vec<u16>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(descriptor.into_iter().collect()),
        ),
        DataElement::new(tags::LUT_DATA, VR::OW, PrimitiveValue::U16(data.into())),
    ])
}

#[test]
fn rescale_window_and_spacing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.dcm");
    // raw 0, 100, 200, 300 -> modality 2*raw - 100 = -100, 100, 300, 500
    write_test_dicom(
        &p,
        2,
        2,
        &[0, 100, 200, 300],
        vec![
            DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"),
            DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-100"),
            DataElement::new(tags::WINDOW_CENTER, VR::DS, "200"),
            DataElement::new(tags::WINDOW_WIDTH, VR::DS, "401"),
            DataElement::new(tags::IMAGER_PIXEL_SPACING, VR::DS, "0.143\\0.15"),
        ],
        "MONOCHROME2",
    );
    let im = read_dicom(&p).unwrap();
    assert_eq!((im.width, im.height), (2, 2));
    // window: (v - 199.5)/400 + 0.5
    let expect = [
        0.0,
        (100.0 - 199.5) / 400.0 + 0.5,
        (300.0 - 199.5) / 400.0 + 0.5,
        1.0,
    ];
    for (a, b) in im.pixels.iter().zip(expect) {
        assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
    }
    let s = im.spacing.unwrap();
    assert!((s.row_mm - 0.143).abs() < 1e-9 && (s.col_mm - 0.15).abs() < 1e-9);
    let f = DicomFile::open(&p).unwrap();
    let RawFrame::Grey { values, .. } = f.raw_frame(0).unwrap() else {
        panic!("greyscale expected")
    };
    assert_eq!(values, vec![-100.0, 100.0, 300.0, 500.0]);
    let info = f.info();
    assert_eq!(info.transfer_syntax.uid, "1.2.840.10008.1.2.1");
    assert!(info.transfer_syntax.decodable);
    assert_eq!(
        (info.rows, info.columns, info.bits_stored),
        (Some(2), Some(2), Some(12))
    );
    assert_eq!(
        info.window.map(|w| (w.center, w.width)),
        Some((200.0, 401.0))
    );
}

#[test]
fn monochrome1_is_inverted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.dcm");
    write_test_dicom(&p, 3, 1, &[0, 50, 100], vec![], "MONOCHROME1");
    let im = read_dicom(&p).unwrap();
    assert_eq!(im.pixels, vec![1.0, 0.5, 0.0]);
    assert!(im.spacing.is_none());
}

#[test]
fn signed_samples_are_sign_extended_from_bits_stored() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.dcm");
    // 12 bits stored in 16, signed: 0x0FFF = -1, 0x0800 = -2048, 0x07FF = 2047;
    // the unused top nibble (0xF000) is ignored.
    let mut e = image_attrs(3, 1, 1, 16, 12, true, "MONOCHROME2");
    e.push(pixel_data_bytes(vec![0xFF, 0xFF, 0x00, 0x08, 0xFF, 0x07]));
    write_dicom(&p, e);
    let s = DicomFile::open(&p).unwrap().stored_frame(0).unwrap();
    assert_eq!(s.values, vec![-1, -2048, 2047]);
}

#[test]
fn thirty_two_bit_and_multi_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.dcm");
    let mut e = image_attrs(2, 1, 1, 32, 32, false, "MONOCHROME2");
    e.push(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, "2"));
    let words: [u32; 4] = [1, 70_000, 4_000_000_000, 7];
    e.push(pixel_data_bytes(
        words.iter().flat_map(|w| w.to_le_bytes()).collect(),
    ));
    write_dicom(&p, e);
    let f = DicomFile::open(&p).unwrap();
    assert_eq!(f.stored_frame(0).unwrap().values, vec![1, 70_000]);
    assert_eq!(f.stored_frame(1).unwrap().values, vec![4_000_000_000, 7]);
    let e = f.stored_frame(2).unwrap_err().to_string();
    assert!(
        e.contains("m.dcm") && e.contains("frame 2") && e.contains("holds 2"),
        "{e}"
    );
}

#[test]
fn big_endian_8_bit_samples_in_ow_words() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("be.dcm");
    // OW words in a big-endian file hold their second sample in the first byte.
    let mut e = image_attrs(4, 1, 1, 8, 8, false, "MONOCHROME2");
    e.push(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8([20u8, 10, 40, 30].into_iter().collect()),
    ));
    write_dicom_ts(&p, e, "1.2.840.10008.1.2.2");
    let s = DicomFile::open(&p).unwrap().stored_frame(0).unwrap();
    assert_eq!(s.values, vec![10, 20, 30, 40]);
}

#[test]
fn one_bit_frames_run_on_across_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.dcm");
    let mut e = image_attrs(3, 1, 1, 1, 1, false, "MONOCHROME2");
    e.push(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, "2"));
    // bits, least significant first: frame 0 = 1 0 1, frame 1 = 1 1 0 -> 0b0001_1101
    e.push(pixel_data_bytes(vec![0b0001_1101, 0]));
    write_dicom(&p, e);
    let f = DicomFile::open(&p).unwrap();
    assert_eq!(f.stored_frame(0).unwrap().values, vec![1, 0, 1]);
    assert_eq!(f.stored_frame(1).unwrap().values, vec![1, 1, 0]);
}

#[test]
fn planar_rgb_and_ybr_full_become_interleaved_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rgb.dcm");
    let mut e = image_attrs(2, 1, 3, 8, 8, false, "RGB");
    e.push(us(tags::PLANAR_CONFIGURATION, 1));
    e.push(pixel_data_bytes(vec![10, 11, 20, 21, 30, 31]));
    write_dicom(&p, e);
    let f = DicomFile::open(&p).unwrap();
    assert_eq!(
        f.stored_frame(0).unwrap().values,
        vec![10, 20, 30, 11, 21, 31]
    );
    // luma of (10, 20, 30) = 0.299*10 + 0.587*20 + 0.114*30 = 18.15
    let im = f.display_frame(0).unwrap();
    assert!((im.pixels[0] as f64 - 18.15 / 255.0).abs() < 1e-6);

    let p = dir.path().join("ybr.dcm");
    let mut e = image_attrs(2, 1, 3, 8, 8, false, "YBR_FULL");
    // (Y, Cb, Cr) = (128, 128, 128) is mid grey; (0, 128, 255): R = 127 * 1.402 = 178.05,
    // G = -127 * 0.299 * 1.402 / 0.587 = -90.7 -> 0, B = 0.
    e.push(pixel_data_bytes(vec![128, 128, 128, 0, 128, 255]));
    write_dicom(&p, e);
    let s = DicomFile::open(&p).unwrap().stored_frame(0).unwrap();
    assert_eq!(s.values, vec![128, 128, 128, 178, 0, 0]);
    assert_eq!(s.photometric, Photometric::Rgb);

    let p = dir.path().join("422.dcm");
    let mut e = image_attrs(2, 1, 3, 8, 8, false, "YBR_FULL_422");
    // Y1 Y2 Cb Cr: both pixels share the chroma
    e.push(pixel_data_bytes(vec![100, 200, 128, 128]));
    write_dicom(&p, e);
    let s = DicomFile::open(&p).unwrap().stored_frame(0).unwrap();
    assert_eq!(s.values, vec![100, 100, 100, 200, 200, 200]);
}

#[test]
fn palette_colour_is_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pal.dcm");
    let mut e = image_attrs(3, 1, 1, 8, 8, false, "PALETTE COLOR");
    e.push(pixel_data_bytes(vec![5, 6, 9]));
    // 3 entries from stored value 5; 16-bit entries; 9 is past the end: last entry.
    let tables = [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [0u16, 1000, 2000],
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [10, 20, 30],
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [65535, 0, 1],
        ),
    ];
    for (d, t, v) in tables {
        e.push(DataElement::new(
            d,
            VR::US,
            PrimitiveValue::U16([3u16, 5, 16].into_iter().collect()),
        ));
        e.push(DataElement::new(
            t,
            VR::OW,
            PrimitiveValue::U16(v.into_iter().collect()),
        ));
    }
    write_dicom(&p, e);
    let f = DicomFile::open(&p).unwrap();
    assert_eq!(f.stored_frame(0).unwrap().values, vec![5, 6, 9]);
    let RawFrame::Rgb { values, bits, .. } = f.raw_frame(0).unwrap() else {
        panic!("colour expected")
    };
    assert_eq!(bits, 16);
    assert_eq!(values, vec![0, 10, 65535, 1000, 20, 0, 2000, 30, 1]);
}

#[test]
fn modality_and_voi_lut_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lut.dcm");
    // Modality LUT: 4 entries from stored value 1: 1 -> 100, 2 -> 200, 3 -> 300, 4 -> 400.
    // VOI LUT: 8-bit output, 3 entries from 200: 200 -> 0, 201 -> 51, 202 -> 255.
    write_test_dicom(
        &p,
        4,
        1,
        &[0, 1, 2, 9],
        vec![
            DataElement::new(
                tags::MODALITY_LUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![lut_item(
                    [4, 1, 16],
                    vec![100, 200, 300, 400],
                )]),
            ),
            DataElement::new(
                tags::VOILUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![lut_item(
                    [3, 200, 8],
                    vec![0, 51, 255],
                )]),
            ),
        ],
        "MONOCHROME2",
    );
    let f = DicomFile::open(&p).unwrap();
    let RawFrame::Grey { values, .. } = f.raw_frame(0).unwrap() else {
        panic!("greyscale expected")
    };
    assert_eq!(values, vec![100.0, 100.0, 200.0, 400.0]);
    let im = f.display_frame(0).unwrap();
    assert_eq!(im.pixels, vec![0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn window_functions() {
    let exact = Window {
        center: 100.0,
        width: 50.0,
        function: WindowFunction::LinearExact,
    };
    assert_eq!(exact.apply(100.0), 0.5);
    assert_eq!(exact.apply(112.5), 0.75);
    let sigmoid = Window {
        function: WindowFunction::Sigmoid,
        ..exact
    };
    // 1 / (1 + exp(-4 * 25 / 50)) = 1 / (1 + e^-2)
    assert!((sigmoid.apply(125.0) - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
    assert_eq!(Window::linear(100.0, 51.0).apply(74.5), 0.0);
}

#[test]
fn implicit_vr_data_set_under_an_explicit_vr_meta_group_is_read() {
    use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
    let mut obj =
        InMemDicomObject::from_element_iter(image_attrs(2, 1, 1, 8, 8, false, "MONOCHROME2"));
    obj.put(pixel_data_bytes(vec![3, 250]));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3.4.5")
        .build()
        .unwrap();
    let mut bytes = vec![0; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).unwrap();
    obj.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .unwrap();
    assert!(
        OpenFileOptions::new().from_reader(&bytes[..]).is_err(),
        "dicom-rs alone refuses the file"
    );
    assert_eq!(
        lengths::check(&bytes),
        Ok(lengths::DataSetVr::ImplicitUnderExplicit)
    );
    let file = DicomFile::from_bytes(Path::new("implicit.dcm"), &bytes).unwrap();
    assert_eq!(file.stored_frame(0).unwrap().values, vec![3, 250]);
}

/// A small valid file in memory, then `tail` in place of its last `cut` bytes.
fn small_file_with_tail(cut: usize, tail: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small.dcm");
    let mut e = image_attrs(2, 1, 1, 8, 8, false, "MONOCHROME2");
    e.push(pixel_data_bytes(vec![3, 250]));
    write_dicom(&p, e);
    let bytes = std::fs::read(&p).unwrap();
    [&bytes[..bytes.len() - cut], tail].concat()
}

#[test]
fn declared_lengths_beyond_the_file_are_refused_before_reading() {
    let ok = small_file_with_tail(0, &[]);
    assert!(lengths::check(&ok).is_ok());
    // Pixel Data (OB, 4-byte length) claiming 4 GB in a file of a few hundred bytes.
    let pixel_header = [0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
    let huge = small_file_with_tail(
        14,
        &[&pixel_header[..], &0xFFFF_FFF0u32.to_le_bytes()].concat(),
    );
    let err = DicomFile::from_bytes(Path::new("huge_len.dcm"), &huge)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("huge_len.dcm") && err.contains("declares 4294967280 bytes"),
        "{err}"
    );
    // An item inside a sequence: its length counts too.
    let item = [
        &[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0][..],
        &0xFFFF_FFFFu32.to_le_bytes(),
        &[0xFE, 0xFF, 0x00, 0xE0],
        &0x4000_0000u32.to_le_bytes(),
    ]
    .concat();
    let err = lengths::check(&small_file_with_tail(0, &item)).unwrap_err();
    assert!(err.contains("(FFFE,E000)"), "{err}");
    // Found by the fuzzer (pydicom's UN_sequence.dcm): an unknown VR, which dicom-rs reads as
    // UN with a 4-byte length, here the bytes of an item tag (3.7 GB).
    let unknown_vr = [
        0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0,
    ];
    let err = lengths::check(&small_file_with_tail(0, &unknown_vr)).unwrap_err();
    assert!(
        err.contains("(0008,1115)") && err.contains("3758161918"),
        "{err}"
    );
}

#[test]
fn a_corrupt_deflated_data_set_is_refused_before_dicom_rs_reads_it() {
    use std::io::Write;
    // Found by the fuzzer: dicom-rs reads the elements that inflate before the stream
    // breaks, here one declaring 3.6 GB, and reserves their length.
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1.99")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3.4.5")
        .build()
        .unwrap();
    let mut bytes = vec![0; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).unwrap();
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let header = [
        0x08, 0x00, 0x15, 0x11, b'O', b'B', 0, 0, 0xD5, 0xD5, 0xD5, 0xD5,
    ];
    deflate.write_all(&header).unwrap();
    deflate.flush().unwrap();
    bytes.extend(deflate.get_ref());
    bytes.extend([0xFF; 16]); // not a deflate block
    let err = lengths::check(&bytes).unwrap_err();
    assert!(err.contains("deflated data set is corrupt"), "{err}");
}

#[test]
fn hostile_headers_get_clear_errors_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 KB file that claims 65535 x 65535 RGB 32-bit pixels must be refused up front.
    let p = dir.path().join("huge.dcm");
    let mut e = image_attrs(65535, 65535, 3, 32, 32, false, "RGB");
    e.push(pixel_data_bytes(vec![0; 12]));
    write_dicom(&p, e);
    let err = DicomFile::open(&p)
        .unwrap()
        .stored_frame(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("huge.dcm") && err.contains("limit"), "{err}");

    let p = dir.path().join("short.dcm");
    let mut e = image_attrs(4, 4, 1, 16, 16, false, "MONOCHROME2");
    e.push(pixel_data_bytes(vec![0; 30]));
    write_dicom(&p, e);
    let err = read_dicom(&p).unwrap_err().to_string();
    assert!(
        err.contains("short.dcm") && err.contains("truncated"),
        "{err}"
    );

    let p = dir.path().join("nopix.dcm");
    write_dicom(&p, image_attrs(4, 4, 1, 16, 16, false, "MONOCHROME2"));
    let err = read_dicom(&p).unwrap_err().to_string();
    assert!(
        err.contains("nopix.dcm") && err.contains("no Pixel Data"),
        "{err}"
    );

    let p = dir.path().join("bits.dcm");
    let mut e = image_attrs(2, 1, 1, 12, 12, false, "MONOCHROME2");
    e.push(pixel_data_bytes(vec![0; 4]));
    write_dicom(&p, e);
    let err = read_dicom(&p).unwrap_err().to_string();
    assert!(err.contains("12 bits allocated"), "{err}");
}

#[test]
fn raw_and_display_png_exports() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ct.dcm");
    write_test_dicom(
        &p,
        3,
        1,
        &[0, 1000, 2000],
        vec![DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-1024")],
        "MONOCHROME2",
    );
    let f = DicomFile::open(&p).unwrap();
    let out = dir.path().join("raw.png");
    let r = write_raw_png(&f.raw_frame(0).unwrap(), &out).unwrap();
    assert_eq!(
        r,
        RawPng {
            offset: 1024,
            rounded: false,
            bits: 16
        }
    );
    let png = image::open(&out).unwrap().into_luma16().into_raw();
    assert_eq!(png, vec![0, 1000, 2000]);
    let out = dir.path().join("display.png");
    let im = f.display_frame(0).unwrap();
    write_display_png(&im, &out).unwrap();
    let back = crate::raster::read_raster(&out).unwrap();
    for (a, b) in back.pixels.iter().zip(&im.pixels) {
        assert!((a - b).abs() <= 0.5 / 65535.0 + 1e-7);
    }
}

/// What radlens must make of a saved fuzz input: its display size, or its error.
type Expected = std::result::Result<(usize, usize), &'static str>;

/// Every input the `dicom` fuzz target stopped on (fuzz/artifacts/dicom/, kept whole in
/// `fuzz_inputs/`), with what radlens must now make of it.
#[test]
fn inputs_the_fuzzer_stopped_on() {
    let cases: [(&str, &[u8], Expected); 9] = [
        // A mutated tag made a group length (4010,0000), UL, of 2 bytes in this implicit VR
        // file. dicom-rs reads 0 values from it yet counts 2 bytes as read, so it takes
        // every later element 2 bytes early and finally two pixel values as a 3.9 GB OB
        // length, which it reserved.
        (
            "oom-a24e0218.dcm",
            include_bytes!("fuzz_inputs/oom-a24e0218.dcm"),
            Err("element (4010,0000) (UL) declares 2 bytes, not a whole number of its 4-byte values"),
        ),
        // pydicom's UN_sequence.dcm mutated: an unknown VR read as UN with an item tag for
        // its length (3.7 GB).
        (
            "oom-6f9bdca5.dcm",
            include_bytes!("fuzz_inputs/oom-6f9bdca5.dcm"),
            Err("element (0008,1115) at byte 32 declares 3758161918 bytes"),
        ),
        // A deflated data set that breaks after an element declaring 3.6 GB.
        (
            "oom-4625a9d7.dcm",
            include_bytes!("fuzz_inputs/oom-4625a9d7.dcm"),
            Err("the deflated data set is corrupt"),
        ),
        // An RLE fragment whose header declares 4 billion segments, which dicom-rs' RLE
        // decoder allocated before checking.
        (
            "oom-3d50a920.dcm",
            include_bytes!("fuzz_inputs/oom-3d50a920.dcm"),
            Err("RLE fragment 0 declares"),
        ),
        // A mutated meta group: an element of group 0003 inside the length (0002,0000)
        // gives. dicom-rs reads the meta group to that length and inflates the rest, where
        // an OB declared 1.4 GB (8.7 s and 1.4 GB of memory); radlens' check stopped at the
        // first other group and inflated other bytes. Now both start at the same byte, and
        // the stream from there is corrupt.
        (
            "slow-b9e2e052.dcm",
            include_bytes!("fuzz_inputs/slow-b9e2e052.dcm"),
            Err("the deflated data set is corrupt"),
        ),
        // A 256 x 256 frame whose JPEG stream states 256 x 64000 pixels: jpeg-decoder
        // decoded all of them (22 s in the fuzzer's build).
        (
            "timeout-27e3eb13.dcm",
            include_bytes!("fuzz_inputs/timeout-27e3eb13.dcm"),
            Err("the JPEG stream is 256 x 64000 pixels, the DICOM attributes say 256 x 256"),
        ),
        // A mutated item delimiter, (FFFE,000D), inside a sequence: dicom-rs reads it as an
        // element of unknown VR whose 4-byte length (3.7 GB) it reserved.
        (
            "oom-c837a001.dcm",
            include_bytes!("fuzz_inputs/oom-c837a001.dcm"),
            Err("element (FFFE,000D) at byte 2286 declares"),
        ),
        // The meta group length (0002,0000) with VR SL: dicom-rs reads any VR there and
        // inflates from where its value says the group ends; radlens' check took only UL
        // and so inflated from elsewhere, while dicom-rs met an OB declaring 3 GB.
        (
            "oom-9a07df4a.dcm",
            include_bytes!("fuzz_inputs/oom-9a07df4a.dcm"),
            Err("the deflated data set is corrupt"),
        ),
        // JPEG 2000 through the Rust port openjp2 broke an unsafe precondition here;
        // OpenJPEG decodes it.
        (
            "crash-156f1f17.dcm",
            include_bytes!("fuzz_inputs/crash-156f1f17.dcm"),
            Ok((100, 100)),
        ),
    ];
    for (name, bytes, expected) in cases {
        let got = DicomFile::from_bytes(Path::new(name), bytes)
            .and_then(|f| f.display_frame(0))
            .map(|x| (x.width, x.height))
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(size), Ok(want)) => assert_eq!(size, want, "{name}"),
            (Err(e), Err(want)) => assert!(e.contains(name) && e.contains(want), "{name}: {e}"),
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
}

#[test]
fn values_that_are_not_a_whole_number_of_their_vr_are_refused() {
    // Rows (US, explicit VR) of 3 bytes is refused; of 4 bytes (two values) it is read.
    let rows = |len: u8| {
        [
            &[0x28, 0x00, 0x10, 0x00, b'U', b'S', len, 0][..],
            &[0; 4][..len as usize],
        ]
        .concat()
    };
    let err = lengths::check(&small_file_with_tail(0, &rows(3))).unwrap_err();
    assert!(err.contains("(0028,0010) (US) declares 3 bytes"), "{err}");
    assert!(lengths::check(&small_file_with_tail(0, &rows(4))).is_ok());
}

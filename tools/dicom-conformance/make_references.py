"""Reference pixel arrays for radlens' DICOM conformance test, made with pydicom.

Usage: python make_references.py CORPUS_DIR OUT_DIR

For every file under CORPUS_DIR (the test files of the pydicom wheel) this writes one entry of
OUT_DIR/manifest.json: whether pydicom reads it as DICOM, whether it has pixel data, whether
pydicom (with the pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle and pyjpegls
plugins) decodes it, and for decoded files the first and last frame twice, as raw little-endian
arrays: `pixel_array` (stored values; colour as interleaved RGB, pydicom's default conversion
from YBR) as int64, and after `apply_modality_lut` (MONOCHROME only; palette files keep their indices) as float64. The Rust test
`radlens-io/tests/pydicom_conformance.rs` compares radlens against these files.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

warnings.simplefilter("ignore")


def frames_of(ds, arr):
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    if n == 1:
        return [(0, arr)]
    # multi-frame: arr is (frames, rows, cols[, 3])
    assert arr.ndim == (4 if spp > 1 else 3), arr.shape
    return [(0, arr[0]), (n - 1, arr[n - 1])]


def entry_for(path: Path, root: Path, out: Path, index: int) -> dict:
    rel = str(path.relative_to(root))
    e = {"file": rel}
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, Exception) as err:  # noqa: BLE001 - any failure is "not DICOM"
        e["status"] = "not_dicom"
        e["reason"] = f"{type(err).__name__}: {err}"
        return e
    e["transfer_syntax"] = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
    if "PixelData" not in ds:
        e["status"] = "no_pixel_data"
        return e
    try:
        arr = ds.pixel_array
    except Exception as err:  # noqa: BLE001
        e["status"] = "pydicom_error"
        e["reason"] = f"{type(err).__name__}: {err}"
        return e
    e["status"] = "decoded"
    e["photometric"] = str(ds.PhotometricInterpretation)
    e["samples_per_pixel"] = int(ds.SamplesPerPixel)
    e["rows"], e["columns"] = int(ds.Rows), int(ds.Columns)
    e["number_of_frames"] = int(getattr(ds, "NumberOfFrames", 1) or 1)
    e["dtype"] = str(arr.dtype)
    e["frames"] = []
    for frame, a in frames_of(ds, arr):
        stem = f"{index:03d}_f{frame}"
        f = {"frame": frame, "stored": stem + "_stored.i64"}
        if arr.dtype.kind == "f":
            f["stored"] = stem + "_stored.f64"
            np.ascontiguousarray(a, dtype="<f8").tofile(out / f["stored"])
        else:
            np.ascontiguousarray(a, dtype="<i8").tofile(out / f["stored"])
        if e["photometric"] in ("MONOCHROME1", "MONOCHROME2"):
            f["modality"] = stem + "_modality.f64"
            m = apply_modality_lut(a, ds)
            np.ascontiguousarray(m, dtype="<f8").tofile(out / f["modality"])
        e["frames"].append(f)
    return e


def main():
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    entries = [entry_for(p, root, out, i) for i, p in enumerate(files)]
    manifest = {
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "entries": entries,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.rename(out / "manifest.json")
    counts = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# DICOM conformance against pydicom: fetch the test files shipped in the pydicom wheel,
# make reference arrays with pydicom and its JPEG/JPEG-LS/JPEG 2000/RLE plugins in a
# throwaway virtual environment (never the project's), then run radlens' test on them.
#   tools/dicom-conformance/run.sh            prepare (once) and run the test
#   tools/dicom-conformance/run.sh --prepare  prepare only (CI, before cargo test)
# The corpus and references live in .corpus/pydicom/ (git-ignored; never committed).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.corpus/pydicom
python=${PYTHON:-python3}
if [ ! -f "$dest/refs/manifest.json" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$python" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" download -q --no-deps pydicom==3.0.2 -d "$tmp/wheel"
  "$tmp/venv/bin/pip" install -q "$tmp"/wheel/pydicom-3.0.2-*.whl numpy==2.4.6 \
    pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0 \
    pylibjpeg-rle==2.2.0 pyjpegls==1.5.1
  "$tmp/venv/bin/python" - "$tmp"/wheel/pydicom-3.0.2-*.whl "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("pydicom/data/test_files/")])
PY
  rm -rf "$dest"
  mkdir -p "$dest"
  mv "$tmp/unpacked/pydicom/data/test_files" "$dest/files"
  "$tmp/venv/bin/python" tools/dicom-conformance/make_references.py "$dest/files" "$dest/refs.tmp"
  mv "$dest/refs.tmp" "$dest/refs"
fi
if [ "${1:-}" = "--prepare" ]; then exit 0; fi
cargo test -p radlens-io --test pydicom_conformance -- --nocapture

#!/usr/bin/env bash
# Build the fuzzers' seeds in fuzz/seeds/<target>/ (git-ignored: they hold pieces of
# ../shared and of the pydicom corpus, which are never committed). run.sh merges them with
# what earlier runs found (fuzz/corpus/<target>/) into a minimal corpus before each run.
#   fuzz/seeds.sh    needs ../shared beside the repository and .corpus/pydicom
#                    (tools/dicom-conformance/run.sh --prepare); a Python with torch
#                    (RADLENS_TORCH_PYTHON) adds ae.pt seeds.
set -eu
cd "$(dirname "$0")"
shared=../../shared/data
c=seeds
rm -rf "$c"
mkdir -p "$c"/{dicom,raster,gguf,safetensors_shard,sae_saelens,sae_ae_pt,jsrt_table,covid_csv,toml_config}

# DICOM: every pydicom test file under 16 KiB (the target's -max_len, run.sh): 158 files
# covering each transfer syntax, photometric interpretation and sample size.
find ../.corpus/pydicom/files -type f -size -16k -exec cp {} "$c/dicom/" \; 2>/dev/null || true

# Images: tiny PNGs (8/16-bit grey, grey+alpha, RGB, palette) and baseline JPEGs (grey and
# colour), written here: decoding a real 2048x2048 film or mask takes tens of milliseconds,
# which is what kept the first runs at 11 inputs a second.
python3 - "$c/raster" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
def png(name, w, h, depth, colour, rows, extra=b""):
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    open(f"{out}/{name}", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png("grey8.png", 4, 3, 8, 0, [bytes(range(y, y + 4)) for y in range(3)])
png("grey16.png", 4, 3, 16, 0, [struct.pack(">4H", *(4096 * (x + y) for x in range(4))) for y in range(3)])
png("grey_alpha.png", 2, 2, 8, 4, [bytes([9, 255, 200, 128]) for _ in range(2)])
png("rgb8.png", 3, 2, 8, 2, [bytes(range(y, y + 9)) for y in range(2)])
png("rgb16.png", 2, 1, 16, 2, [struct.pack(">6H", *range(0, 60000, 10000))])
png("palette.png", 4, 1, 8, 3, [bytes([0, 1, 2, 1])], chunk(b"PLTE", bytes(range(9))))
# Baseline JPEG: all-ones quantisation, one-code Huffman tables (DC difference 0, EOB).
def jpeg(name, w, h, comps):
    seg = lambda m, p: bytes([0xFF, m]) + struct.pack(">H", len(p) + 2) + p
    sof = struct.pack(">BHHB", 8, h, w, comps) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(comps))
    table = lambda cls: seg(0xC4, bytes([cls]) + bytes([1] + [0] * 15) + b"\0")
    sos = bytes([comps]) + b"".join(bytes([i + 1, 0]) for i in range(comps)) + b"\x00\x3f\x00"
    n = 2 * ((w + 7) // 8) * ((h + 7) // 8) * comps
    bits = "0" * n + "1" * (-n % 8)
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    open(f"{out}/{name}", "wb").write(b"\xff\xd8" + seg(0xDB, b"\0" + bytes([1] * 64)) + seg(0xC0, sof)
                                      + table(0x00) + table(0x10) + seg(0xDA, sos) + scan + b"\xff\xd9")
jpeg("grey8x8.jpg", 8, 8, 1)
jpeg("colour16x8.jpg", 16, 8, 3)
PY

# GGUF: prefixes of the real model (header, metadata, the start of the vocabulary).
gguf=../../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf
for n in 512 2048 8192; do head -c "$n" "$gguf" > "$c/gguf/prefix_$n.gguf"; done

# Clinical tables and CSVs: the real files, whole and cut to their first lines.
head -c 2000 "$shared/jsrt/CLNDAT_EN.txt" > "$c/jsrt_table/nodules_head.txt"
head -c 2000 "$shared/jsrt/CNNDAT_EN.TXT" > "$c/jsrt_table/non_nodules_head.txt"
# real_head: the first rows pointed at the target's image x.jpg and 2x2 mask on an 8x8 canvas.
python3 - "$shared/covid-cxr/structure.csv" "$shared/covid-cxr/metadata.csv" "$c/covid_csv/real_head" <<'PY'
import csv, io, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))[:7]
h = rows[0]
for i, r in enumerate(rows[1:]):
    r[h.index("Filename")], r[h.index("Mask")], r[h.index("Resolution")] = "x.jpg", "masks/m.png", "8x8"
    for col, v in zip(["Top", "Left", "Width", "Height"], [i % 6, i % 5, 2, 2]):
        r[h.index(col)] = str(v)
out = io.StringIO(); csv.writer(out, lineterminator="\n").writerows(rows)
meta = open(sys.argv[2], newline="").read().splitlines()[:6]
open(sys.argv[3], "w").write(out.getvalue() + "\0" + "\n".join(meta) + "\n")
PY
{ head -c 1500 "$shared/covid-cxr/structure.csv"; printf '\0'; head -c 1500 "$shared/covid-cxr/metadata.csv"; } > "$c/covid_csv/real"

# TOML: the shipped configurations.
cp ../configs/*.toml "$c/toml_config/"

# safetensors shards and SAELens weights, written by a small stdlib-only script.
python3 - "$c" <<'PY'
import json, struct, sys
c = sys.argv[1]
def st(tensors, metadata=None):
    header, blobs, off = {}, b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data; off += len(data)
    if metadata: header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blobs
f32 = lambda n: struct.pack(f"<{n}f", *[0.25 * i for i in range(n)])
u32 = lambda v: struct.pack(f"<{len(v)}I", *v)
shard = st({"activations": ("F32", [2, 4], f32(8)), "token_ids": ("U32", [2], u32([5, 6])),
            "positions": ("U32", [2], u32([0, 1])), "doc_index": ("U32", [2], u32([0, 0]))},
           {"docs": json.dumps(["r1"]), "token_text": json.dumps(["a", "b"])})
open(f"{c}/safetensors_shard/shard", "wb").write(shard)
open(f"{c}/safetensors_shard/bare", "wb").write(st({"activations": ("F32", [1, 4], f32(4))}))
w = st({"W_enc": ("F32", [4, 8], f32(32)), "b_enc": ("F32", [8], f32(8)),
        "W_dec": ("F32", [8, 4], f32(32)), "b_dec": ("F32", [4], f32(4))})
for arch, extra in [("standard", {}), ("topk", {"k": 2})]:
    cfg = json.dumps({"d_in": 4, "d_sae": 8, "architecture": arch, **extra}).encode()
    open(f"{c}/sae_saelens/{arch}", "wb").write(cfg + b"\0" + w)
PY

torch=${RADLENS_TORCH_PYTHON:-/opt/torchvenv/bin/python}
if [ -x "$torch" ]; then
  "$torch" - "$c" <<'PY'
import io, json, sys, torch
c = sys.argv[1]
sd = {"W_enc": torch.randn(4, 8), "b_enc": torch.zeros(8), "W_dec": torch.randn(8, 4),
      "b_dec": torch.zeros(4), "threshold": torch.tensor(0.5), "group_sizes": torch.tensor([4, 4]),
      "k": torch.tensor(2)}
buf = io.BytesIO(); torch.save(sd, buf)
cfg = json.dumps({"trainer": {"activation_dim": 4, "dict_size": 8, "k": 2}}).encode()
open(f"{c}/sae_ae_pt/matryoshka", "wb").write(cfg + b"\0" + buf.getvalue())
PY
fi
for d in "$c"/*; do echo "$(basename "$d"): $(ls "$d" | wc -l) seeds"; done

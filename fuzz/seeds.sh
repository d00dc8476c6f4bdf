#!/usr/bin/env bash
# Build the fuzzers' seed corpora in fuzz/corpus/<target>/ (git-ignored: they hold pieces
# of ../shared and of the pydicom corpus, which are never committed).
#   fuzz/seeds.sh    needs ../shared beside the repository and .corpus/pydicom
#                    (tools/dicom-conformance/run.sh --prepare); a Python with torch
#                    (RADLENS_TORCH_PYTHON) adds ae.pt seeds.
set -eu
cd "$(dirname "$0")"
shared=../../shared/data
c=corpus
rm -rf "$c"
mkdir -p "$c"/{dicom,raster,gguf,safetensors_shard,sae_saelens,sae_ae_pt,jsrt_table,covid_csv,toml_config}

# DICOM: every pydicom test file under 256 KiB (the fuzzer's inputs stay small).
find ../.corpus/pydicom/files -type f -size -256k -exec cp {} "$c/dicom/" \; 2>/dev/null || true

# Images: the smallest real PNG masks and JPEG films, and small 16-bit and colour PNGs.
find "$shared" -name '*.png' -size -200k -printf '%s %p\n' | sort -n | head -n 4 > raster.list || true
find "$shared" \( -name '*.jpg' -o -name '*.jpeg' \) -printf '%s %p\n' | sort -n | head -n 2 >> raster.list || true
while read -r _ f; do cp "$f" "$c/raster/"; done < raster.list
rm -f raster.list
python3 - "$c/raster" <<'PY'
import struct, sys, zlib
def png(path, w, h, depth, colour, rows):
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(f"{sys.argv[1]}/grey16.png", 4, 3, 16, 0, [struct.pack(">4H", *(4096 * (x + y) for x in range(4))) for y in range(3)])
png(f"{sys.argv[1]}/rgb8.png", 3, 2, 8, 2, [bytes(range(y, y + 9)) for y in range(2)])
PY

# GGUF: prefixes of the real model (header, metadata, the start of the vocabulary).
gguf=../../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf
for n in 512 4096 65536; do head -c "$n" "$gguf" > "$c/gguf/prefix_$n.gguf"; done

# Clinical tables and CSVs: the real files, whole and cut to their first lines.
cp "$shared/jsrt/CLNDAT_EN.txt" "$shared/jsrt/CNNDAT_EN.TXT" "$c/jsrt_table/"
head -c 2000 "$shared/jsrt/CLNDAT_EN.txt" > "$c/jsrt_table/head.txt"
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
{ cat "$shared/covid-cxr/structure.csv"; printf '\0'; cat "$shared/covid-cxr/metadata.csv"; } | head -c 60000 > "$c/covid_csv/real"

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

#!/usr/bin/env bash
# Run fuzz targets one after another (PARALLEL=1: all at once) at low CPU priority (NICE,
# default 15), each until SECONDS have passed or RUNS inputs were tried (default 10 million),
# from the binaries `cargo +nightly fuzz build` made (release, AddressSanitizer, debug
# assertions). FORK=N runs each target as N worker processes sharing its corpus (libFuzzer's
# -fork=N), for a machine with cores to spare.
#
# Before each run the seeds (fuzz/seeds/<target>, fuzz/seeds.sh) and what earlier runs found
# (fuzz/corpus/<target>) are merged into a minimal corpus (libFuzzer's -merge=1: the fewest,
# smallest inputs that keep the coverage), and inputs are capped at the format's MAX_LEN
# below: big enough for every structure the parser reads, small enough that an input is
# parsed in well under a millisecond. Findings go to fuzz/artifacts/<target>/, libFuzzer's
# log to fuzz/logs/<target>.log; its last lines (-print_final_stats) give executions,
# exec/s and time.
#   fuzz/run.sh [SECONDS] [TARGET...]
#     FUZZ_BIN=<dir of the binaries>  RUNS=<n>  NICE=<n>  FORK=<workers>  PARALLEL=1
set -eu
cd "$(dirname "$0")"
secs=${1:-1800}
shift || true
targets=${*:-dicom raster gguf safetensors_shard sae_saelens sae_ae_pt jsrt_table covid_csv toml_config}
bin=${FUZZ_BIN:-${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release}

# Largest input per target, in bytes: DICOM 16 KiB (holds 158 of pydicom's test files whole,
# every transfer syntax among them); images 4 KiB (a PNG or JPEG header declares any size,
# a few hundred bytes carry the chunks and markers); GGUF 8 KiB (header, metadata and
# tensor index; vocabularies beyond that add only more of the same strings); the rest hold
# a few rows or keys.
declare -A MAX_LEN=(
  [dicom]=16384 [raster]=4096 [gguf]=8192 [safetensors_shard]=2048 [sae_saelens]=4096
  [sae_ae_pt]=8192 [jsrt_table]=4096 [covid_csv]=4096 [toml_config]=2048
)
# 2 GiB of memory, 10 s per input: an input of at most 16 KiB must not need more.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10)
# Leaks that are not leaks (threads a codec leaves exiting): lsan.supp says which and why.
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp"

mkdir -p logs
fuzz_one() {
  local t=$1 len=${MAX_LEN[$1]:?"unknown target $1"}
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  rm -rf "corpus/$t.min" && mkdir "corpus/$t.min"
  nice -n "${NICE:-15}" "$bin/$t" -merge=1 -max_len="$len" "${limits[@]}" "corpus/$t.min" "corpus/$t" \
    "seeds/$t" > "logs/$t.merge.log" 2>&1 || { echo "$t: merge failed (logs/$t.merge.log)"; return; }
  rm -rf "corpus/$t" && mv "corpus/$t.min" "corpus/$t"
  echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sk "corpus/$t" | cut -f1) KiB after merging"
  nice -n "${NICE:-15}" "$bin/$t" "corpus/$t" ${FORK:+-fork="$FORK"} -max_len="$len" \
    -runs="${RUNS:-10000000}" -max_total_time="$secs" "${limits[@]}" \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "logs/$t.log" 2>&1 ||
    echo "$t: libFuzzer exited $? (see logs/$t.log)"
  # Fork mode's parent prints running totals ("#executions: cov: ... time: ...") instead.
  echo "$t: $(grep -E 'stat::(number_of_executed_units|average_exec_per_sec)|^#[0-9]+:' \
    "logs/$t.log" | tail -2 | tr '\n' ' ')"
}
if [ -n "${PARALLEL:-}" ]; then
  for t in $targets; do fuzz_one "$t" & done
  wait
else
  for t in $targets; do fuzz_one "$t"; done
fi

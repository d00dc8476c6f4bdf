#!/usr/bin/env bash
# Run fuzz targets one after another at low CPU priority, each until SECONDS have passed or
# RUNS inputs were tried (default 10 million), from the binaries `cargo +nightly fuzz build`
# made (release, AddressSanitizer, debug assertions), on fuzz/corpus/<target> (fuzz/seeds.sh).
# Findings go to fuzz/artifacts/<target>/, libFuzzer's log to fuzz/logs/<target>.log; its
# last lines (-print_final_stats) give executions, exec/s and time.
#   fuzz/run.sh [SECONDS] [TARGET...]    FUZZ_BIN=<dir of the binaries>  RUNS=<n>
set -eu
cd "$(dirname "$0")"
secs=${1:-1800}
shift || true
targets=${*:-dicom raster gguf safetensors_shard sae_saelens sae_ae_pt jsrt_table covid_csv toml_config}
bin=${FUZZ_BIN:-target/x86_64-unknown-linux-gnu/release}
mkdir -p logs
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # 2 GiB of memory, 10 s per input: a 1 KB file must not need more.
  nice -n 15 "$bin/$t" "corpus/$t" -runs="${RUNS:-10000000}" -max_total_time="$secs" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 > "logs/$t.log" 2>&1 || echo "$t: libFuzzer exited $? (see logs/$t.log)"
done

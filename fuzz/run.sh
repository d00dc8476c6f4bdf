#!/usr/bin/env bash
# Run fuzz targets in parallel at the lowest CPU priority, each for SECONDS (default 1800),
# from the binaries `cargo +nightly fuzz build -O -a -s none` made, on fuzz/corpus/<target>
# (fuzz/seeds.sh); findings go to fuzz/artifacts/<target>/, libFuzzer's log to
# fuzz/logs/<target>.log (its last lines give executions and time).
#   fuzz/run.sh [SECONDS] [TARGET...]      FUZZ_BIN=<dir of the built binaries>
set -eu
cd "$(dirname "$0")"
secs=${1:-1800}
shift || true
targets=${*:-dicom raster gguf safetensors_shard sae_saelens sae_ae_pt jsrt_table covid_csv toml_config}
bin=${FUZZ_BIN:-target/x86_64-unknown-linux-gnu/release}
mkdir -p logs
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # 2 GiB of RSS, 10 s per input: a 1 KB file must not need more.
  nice -n 19 "$bin/$t" "corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -timeout=10 -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 > "logs/$t.log" 2>&1 &
done
wait

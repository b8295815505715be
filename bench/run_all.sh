#!/usr/bin/env bash
# Runs every PitBox benchmark with its defaults (each about 2 minutes at most) and keeps
# the output of each in $BENCH_OUT (default: a new temp dir). See bench/RESULTS.md.
#
#   bench/run_all.sh            # all four
#   bench/run_all.sh --profile  # also the cProfile top-15 of the ingest benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${BENCH_OUT:-$(mktemp -d -t pitbox-bench.XXXXXX)}
mkdir -p "$OUT"
INGEST_ARGS=()
if [[ "${1:-}" == "--profile" ]]; then
    INGEST_ARGS+=(--profile)
fi

echo "# PitBox benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc=$(nproc)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# output kept in $OUT"
run() {
    local name=$1
    shift
    echo
    echo "################ $name: $*"
    local started=$SECONDS
    "$PY" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "################ $name took $((SECONDS - started)) s"
}
run wire_bytes bench/wire_bytes.py
run ingest_rate bench/ingest_rate.py "${INGEST_ARGS[@]}"
run shim_tick bench/shim_tick.py
run latency bench/latency.py
run inference_latency bench/inference_latency.py
run tls_overhead bench/tls_overhead.py --seconds 10 --burst 10000
# Load: ~3 min (encoding 4 races, real time 20 s, five 8 s steps). The 24-hour soak
# (bench/soak.py) and the fuzzers (bench/fuzz/run_all.sh) are separate: see RESULTS.md.
run load bench/load.py
# The Pi estimate scales the throughput headlines just written (sysbench: apt-get
# install sysbench); then the summary of RESULTS.md is rendered from bench/out.
run pi_estimate bench/pi_estimate.py
"$PY" bench/render_summary.py

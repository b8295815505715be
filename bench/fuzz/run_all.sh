#!/usr/bin/env bash
# Runs every atheris harness for a bounded time each (default 120 s) and prints a
# one-line verdict per harness. Findings (crash-*/timeout-*/oom-* inputs) land in
# $FUZZ_OUT (default: a new temp dir). See bench/RESULTS.md "Fuzzing".
#
#   bench/fuzz/run_all.sh            # 120 s per harness
#   FUZZ_SECONDS=600 bench/fuzz/run_all.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q -e ".[fuzz]"
SECONDS_EACH=${FUZZ_SECONDS:-120}
OUT=${FUZZ_OUT:-$(mktemp -d -t pitbox-fuzz.XXXXXX)}
mkdir -p "$OUT"
echo "# PitBox fuzzing, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${SECONDS_EACH} s per harness, output in $OUT"
status=0
for harness in codec session_yaml ibt dump api_bodies; do
    log="$OUT/$harness.log"
    (cd "$OUT" && "$OLDPWD/$PY" "$OLDPWD/bench/fuzz/fuzz_$harness.py" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=200000 -print_final_stats=1 >"$log" 2>&1)
    rc=$?
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    if [[ $rc -eq 0 ]]; then
        echo "$harness: no finding ($runs; $cov)"
    else
        echo "$harness: FINDING rc=$rc, see $log and $OUT/crash-* / timeout-* / oom-*"
        status=1
    fi
done
exit $status

#!/usr/bin/env bash
# Compares two iii-engine binaries, interleaved so that the machine's drift hits both:
# each round runs `limit` once, then every case against A, B, and A again (labelled
# "$A_LABEL", "$B_LABEL", "$A_LABEL-again": the two A figures show the noise between
# repeated runs of one binary). One JSON line per run to OUT, then the summary table.
# Usage: bench/compare.sh ROUNDS OUT ENGINE_A ENGINE_B
#   CASES: `iii-bench run` argument lists, one per line (default: throughput with the
#   raw and the ours client); each gets --spawn-engine --engine-bin and the label;
#   A_LABEL / B_LABEL (default "a" / "b") name the binaries in the output;
#   A_ARGS / B_ARGS: extra iii-bench arguments for that binary's runs (e.g.
#   B_ARGS="--engine-arg=--read-ahead-bytes=1048576");
#   MAX_LOAD (default 100: do not wait) as in run-all.sh; LIMIT=0 skips `limit`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 4 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
ROUNDS=$1 OUT=$2 A=$3 B=$4
A_LABEL=${A_LABEL:-a} B_LABEL=${B_LABEL:-b}
A_ARGS=${A_ARGS:-} B_ARGS=${B_ARGS:-}
MAX_LOAD=${MAX_LOAD:-100}
LIMIT=${LIMIT:-1}
CASES=${CASES:-"throughput --client raw
throughput --client ours"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BENCH="$CARGO_TARGET_DIR/release/iii-bench"
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p iii-bench" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"
one() { # bin label extra-args case-args...
  local bin=$1 label=$2 extra=$3
  shift 3
  echo "# $(uptime)" >&2
  # shellcheck disable=SC2086 # extra holds separate arguments
  nice -n 0 "$BENCH" run "$@" --spawn-engine --engine-bin "$bin" --label "$label" \
    --max-load "$MAX_LOAD" $extra | tee -a "$OUT"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "# round $round of $ROUNDS" >&2
  [ "$LIMIT" = 0 ] || "$BENCH" run limit --max-load "$MAX_LOAD" | tee -a "$OUT"
  while IFS= read -r case; do
    [ -n "$case" ] || continue
    # shellcheck disable=SC2086 # case holds separate arguments
    one "$A" "$A_LABEL" "$A_ARGS" $case
    # shellcheck disable=SC2086
    one "$B" "$B_LABEL" "$B_ARGS" $case
    # shellcheck disable=SC2086
    one "$A" "$A_LABEL-again" "$A_ARGS" $case
  done <<<"$CASES"
done
"$BENCH" summarize "$OUT"

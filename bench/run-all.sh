#!/usr/bin/env bash
# Runs every scenario (every client) and writes one JSON line per run to $OUT,
# then prints the min/median/max table. Usage: bench/run-all.sh [RUNS] [OUT]
#   CLIENTS (default "raw ours published") are the clients run, in that order;
#   SCENARIOS (default all eight) are the scenarios run;
#   SLOW_BYTES (default 1 GiB) sizes slow_reader; LONG_RUNS (default RUNS) its run count
#   (each 1 GiB run takes ~130 s at 8 MiB/s);
#   MAX_LOAD (default 1.0) is the 1-minute load each run waits for (at most 60 s);
#   PIPELINED (default 100000) is the number of calls made 64 in flight;
#   IDLE_CONNS (default 10000) sizes idle_conns (raw client, iii-engine as a child);
#   SOAK_CALLS (default 10000000) sizes soak (raw and ours, iii-engine as a child, one
#   run each, ~5 min per client on 2 cores); SOAK_CALLS=0 skips the soak;
#   URL (+ ENGINE_PID for the RSS figures) runs everything against that engine instead
#   of ours (in-process, or the iii-engine binary as a child for fanin/slow_reader).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
OUT=${2:-bench/results/$(date +%Y%m%d-%H%M%S).jsonl}
SLOW_BYTES=${SLOW_BYTES:-1073741824}
LONG_RUNS=${LONG_RUNS:-$RUNS}
MAX_LOAD=${MAX_LOAD:-1.0}
PIPELINED=${PIPELINED:-100000}
IDLE_CONNS=${IDLE_CONNS:-10000}
SOAK_CALLS=${SOAK_CALLS:-10000000}
CLIENTS=${CLIENTS:-raw ours published}
SCENARIOS=${SCENARIOS:-limit idle-conns throughput latency channel-rtt fanin slow-reader soak}
URL=${URL:-}
ENGINE_PID=${ENGINE_PID:-}
engine=()        # in-process engine
child=(--spawn-engine)
if [ -n "$URL" ]; then
  engine=(--url "$URL")
  [ -n "$ENGINE_PID" ] && engine+=(--engine-pid "$ENGINE_PID")
  child=("${engine[@]}")
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p iii-bench -p iii-tokio --bin iii-bench --bin iii-engine
case " $CLIENTS " in *" published "*)
  # The published crates.io iii-sdk client: a standalone crate (own lock file, own target
  # dir, outside the workspace); iii-bench finds it there by default.
  cargo build --release --locked --manifest-path bench/published/Cargo.toml \
    --target-dir bench/published/target ;;
esac
B="$CARGO_TARGET_DIR/release/iii-bench"
mkdir -p "$(dirname "$OUT")"
run() {
  case " $SCENARIOS " in *" $1 "*) ;; *) return 0 ;; esac
  echo "# $(uptime)" >&2
  "$B" run "$@" --max-load "$MAX_LOAD" | tee -a "$OUT"
}
run limit --runs "$RUNS"
run idle-conns "${child[@]}" --idle-conns "$IDLE_CONNS" --runs "$RUNS"
for c in $CLIENTS; do
  run throughput --client $c "${engine[@]}" --runs "$RUNS"
  run latency --client $c "${engine[@]}" --runs "$RUNS" --pipelined-calls "$PIPELINED"
  run channel-rtt --client $c "${engine[@]}" --runs "$RUNS"
  run fanin --client $c "${child[@]}" --runs "$RUNS"
  run slow-reader --client $c "${child[@]}" --bytes "$SLOW_BYTES" --runs "$LONG_RUNS"
done
if [ "$SOAK_CALLS" != 0 ]; then
  for c in $CLIENTS; do
    [ "$c" = published ] && continue   # soak drives our SDK and the raw client only
    run soak --client $c "${child[@]}" --soak-calls "$SOAK_CALLS" --timeout 3600
  done
fi
"$B" summarize "$OUT"

#!/usr/bin/env bash
# The documentation's browser example, in one command: builds the browser package
# (iii-browser/build.sh), starts an engine and the example's Rust backend on loopback,
# serves iii-browser/web/ and prints the page's URL. Ctrl-C stops everything.
#
#   iii-browser/example/run.sh           # open the printed URL in a browser
#   iii-browser/example/run.sh --check   # open it in headless Chromium and wait for
#                                        # the page's "example ok" (exit 0), 90 s at most
set -euo pipefail
cd "$(dirname "$0")/../.."
check=0
[ "${1:-}" = --check ] && check=1

iii-browser/build.sh
# The test profile (opt-level 1, dependencies 2; output in target/debug like dev): what
# `cargo test --workspace` has built already, so CI's run after the tests is quick.
cargo build --quiet --profile test -p iii-tokio --bin iii-engine --example browser_backend
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The page is served on 127.0.0.1 (a free port): allow that origin, nothing else.
"$target/debug/iii-engine" --addr 127.0.0.1:0 --allowed-origin "http://127.0.0.1:*" >"$work/engine.out" 2>"$work/engine.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/engine.out" ] && break; sleep 0.1; done
engine=$(head -n1 "$work/engine.out")
[ -n "$engine" ] || { echo "the engine did not start:" >&2; cat "$work/engine.log" >&2; exit 1; }

III_URL=$engine "$target/debug/examples/browser_backend" >"$work/backend.log" 2>&1 &
pids+=($!)

page="example/?engine=$engine"
if [ $check = 1 ]; then
  mkfifo "$work/stdin"
  node iii-browser/web/host.mjs --root iii-browser/web --open "$page" <"$work/stdin" >"$work/host.log" 2>&1 &
  pids+=($!)
  exec 3>"$work/stdin" # holds the host's standard input open until we exit
  for _ in $(seq 900); do
    if grep -q "example ok" "$work/host.log"; then
      grep -E "example ok|uncaught|error" "$work/host.log"
      exit 0
    fi
    sleep 0.1
  done
  echo "the example page did not finish within 90 s:" >&2
  cat "$work/host.log" "$work/backend.log" >&2
  exit 1
fi

mkfifo "$work/stdin"
node iii-browser/web/host.mjs --root iii-browser/web <"$work/stdin" >"$work/host.out" 2>&1 &
pids+=($!)
exec 3>"$work/stdin"
for _ in $(seq 100); do [ -s "$work/host.out" ] && break; sleep 0.1; done
echo "engine:  $engine"
echo "open:    $(head -n1 "$work/host.out")$page"
echo "(Ctrl-C stops the engine, the backend and the server)"
wait "${pids[0]}"

#!/usr/bin/env bash
# Randomised chaos run for piswarm (not part of CI): a bounded job on loopback; the coordinator and
# the workers are killed with SIGKILL at random moments and restarted, for ROUNDS rounds; at the end
# the result must be bit-identical to a clean run and the store must hold every interval once.
#
# Usage: scripts/chaos.sh [ROUNDS] [TERMS] [CHUNK]     (defaults: 20 rounds, 1e11 terms, 1e7 chunk)
set -euo pipefail
rounds=${1:-20}; terms=${2:-1e11}; chunk=${3:-1e7}
bin=${PISWARM:-target/release/piswarm}
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d); trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PISWARM_LOG=error

start_serve() {
  "$bin" serve --no-http --quiet --exit-when-done --terms "$terms" --chunk "$chunk" --listen "127.0.0.1:$port" \
    --db "$dir/piswarm.db" --out "$dir" >/dev/null 2>&1 &
  serve_pid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
}
start_worker() { "$bin" worker --threads 1 --retry-for 120s --name "w$1-$RANDOM" --connect "127.0.0.1:$port" >/dev/null 2>&1 & echo $!; }

start_serve
workers=($(start_worker 0) $(start_worker 1) $(start_worker 2))
coordinator_kills=0; worker_kills=0
for round in $(seq "$rounds"); do
  sleep "0.$((RANDOM % 9 + 1))"
  kill -0 "$serve_pid" 2>/dev/null || break      # the job is done
  if (( RANDOM % 3 == 0 )); then
    kill -9 "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true
    coordinator_kills=$((coordinator_kills + 1)); start_serve
  else
    i=$((RANDOM % 3)); kill -9 "${workers[$i]}" 2>/dev/null || true
    worker_kills=$((worker_kills + 1)); workers[$i]=$(start_worker "$i")
  fi
done
wait "$serve_pid" || true
# If the last coordinator was killed after the job ended, a final restart finishes it.
[ -f "$dir/final.json" ] || { start_serve; wait "$serve_pid"; }
kill "${workers[@]}" 2>/dev/null || true

clean=$("$bin" run --terms "$terms" --chunk "$chunk" --workers 2 --json)
python3 - "$dir/final.json" "$clean" "$dir/piswarm.db" "$coordinator_kills" "$worker_kills" <<'PY'
import json, sqlite3, sys
got = json.load(open(sys.argv[1])); clean = json.loads(sys.argv[2])
rows, distinct = sqlite3.connect(sys.argv[3]).execute(
    "SELECT COUNT(*), COUNT(DISTINCT interval_id) FROM results WHERE run_id = 1").fetchone()
same = all(got[k] == clean[k] for k in ["terms", "intervals", "even_sum", "odd_sum", "pi", "pi_corrected"])
print(f"coordinator kills: {sys.argv[4]}, worker kills: {sys.argv[5]}")
print(f"stored results: {rows}, distinct intervals: {distinct}, expected: {clean['intervals']}")
print(f"pi: {got['pi']!r} (clean run: {clean['pi']!r}); identical to the clean run: {same}")
sys.exit(0 if same and rows == distinct == clean["intervals"] else 1)
PY

#!/usr/bin/env bash
# The π kernel against its C yardsticks, one core each, in one run on this machine: piswarm's
# kernels (`piswarm bench kernel --threads 1`) and the hand-written C kernels that divide once per
# 4 and once per 8 terms (../shared/bench/leibniz_oct.c, gcc -O3 -march=native), interleaved
# ROUNDS times; the best of each is kept (a busy machine only ever slows a measurement down).
# Prints a Markdown table with every rate as a ratio to the faster C kernel, the CPU, and what
# bounds piswarm's kernel there (bench kernel's probe).
#
# Usage: scripts/kernel-vs-c.sh [ROUNDS]   (default 3)
# Environment: PISWARM (the binary; default target/release/piswarm), OCT_C (the C source;
# default ../shared/bench/leibniz_oct.c from the project's root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
bin=${PISWARM:-$root/target/release/piswarm}
src=${OCT_C:-$root/../shared/bench/leibniz_oct.c}
[ -x "$bin" ] || { echo "kernel-vs-c: no binary at $bin (cargo build --release)" >&2; exit 2; }
[ -f "$src" ] || { echo "kernel-vs-c: no C reference at $src (set OCT_C)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kernel-vs-c.XXXXXX")
trap 'rm -rf "$work"' EXIT
gcc -O3 -march=native -ffp-contract=off -o "$work/oct" "$src"
for i in $(seq "$rounds"); do
    timeout 120 "$bin" bench kernel --threads 1 --seconds 2 --json > "$work/rust-$i.json"
    # 2^32 terms from u = 1 (the C program prints both groupings' rates).
    timeout 120 "$work/oct" 4294967296 1 > "$work/c-$i.txt"
done
python3 - "$work" "$rounds" <<'PY'
import json, re, sys
work, rounds = sys.argv[1], int(sys.argv[2])
rust = [json.load(open(f"{work}/rust-{i}.json")) for i in range(1, rounds + 1)]
best = {}
for r in rust:
    for k in r["kernels"]:
        best[k["kernel"]] = max(best.get(k["kernel"], 0), k["terms_per_s_per_core"])
c4 = c8 = 0.0
for i in range(1, rounds + 1):
    m = re.search(r"quad \S+ s (\S+) terms/s\s+oct \S+ s (\S+) terms/s", open(f"{work}/c-{i}.txt").read())
    c4, c8 = max(c4, float(m.group(1))), max(c8, float(m.group(2)))
ref = max(c4, c8)
last = rust[-1]
print(f"CPU: {last['cpu']} ({last['isa']}); piswarm's oct loop is bound by: {last['bound']} "
      f"(probe: {json.dumps(last['probe'])})")
print()
print("| kernel (one core, best of %d) | terms/s | × faster C |" % rounds)
print("|---|---|---|")
for name in ("oct", "quad"):
    if name in best:
        print(f"| piswarm {name} | {best[name]:.3e} | {best[name] / ref:.2f} |")
print(f"| C, one division per 4 terms, Kahan per lane | {c4:.3e} | {c4 / ref:.2f} |")
print(f"| C, one division per 8 terms, Kahan per lane | {c8:.3e} | {c8 / ref:.2f} |")
PY

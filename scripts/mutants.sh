#!/usr/bin/env bash
# The out-of-product mutation check: every defect kept in mutants/*.mutant must make the
# deterministic simulator fail.
#
#   scripts/mutants.sh [--no-baseline] [--apply-only] [NAME...]
#
# For each mutant (all of them, or the NAMEs given): a fresh copy of the tree (without target/ or
# .git) in a scratch directory, the mutant applied to it (each old snippet must occur exactly
# once under its path, or the script fails: a mutant that no longer applies is an error, not a
# pass), the test binary built, and the simulator's sweep run
# (`simulation::every_invariant_holds_on_ten_thousand_seeds`, PISWARM_SIM_SEEDS seeds). The
# mutant is killed if the sweep fails; a mutant that survives, does not apply or does not build
# makes the script exit 1. First, unless --no-baseline, the unmutated copy must pass the same
# sweep (otherwise every mutant would look killed). --apply-only only checks that each mutant
# applies (seconds; tests/it/mutants.rs checks the same in the normal suite).
#
# Every copy is built at the same scratch path with the same CARGO_TARGET_DIR (default: this
# tree's target/), so the dependencies are those `cargo test --release` built (not rebuilt) and
# only piswarm recompiles per mutant — incrementally, and at opt-level MUTANTS_OPT_LEVEL (1 by
# default: a build per mutant is the cost; the sweep runs in seconds at any level).
# Environment: CARGO_TARGET_DIR, MUTANTS_SCRATCH (default ${TMPDIR:-/tmp}/piswarm-mutants),
# MUTANTS_OPT_LEVEL, PISWARM_SIM_SEEDS (default 10000). Logs are kept in the scratch directory,
# one per mutant.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scratch=${MUTANTS_SCRATCH:-${TMPDIR:-/tmp}/piswarm-mutants}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export PISWARM_SIM_SEEDS=${PISWARM_SIM_SEEDS:-10000}
sweep=simulation::every_invariant_holds_on_ten_thousand_seeds
cargo_test=(cargo test --release --test it
  --config "profile.release.package.piswarm.opt-level=${MUTANTS_OPT_LEVEL:-1}"
  --config profile.release.incremental=true)

baseline=1
apply_only=0
names=()
for arg in "$@"; do
  case $arg in
    --no-baseline) baseline=0 ;;
    --apply-only)
      apply_only=1
      baseline=0
      ;;
    -h | --help)
      sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "mutants.sh: unknown option $arg" >&2
      exit 2
      ;;
    *) names+=("$arg") ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  for f in "$root"/mutants/*.mutant; do
    names+=("$(basename "$f" .mutant)")
  done
fi
for name in "${names[@]}"; do
  if [ ! -f "$root/mutants/$name.mutant" ]; then
    echo "mutants.sh: no mutant named $name (mutants/$name.mutant)" >&2
    exit 2
  fi
done

tree=$scratch/tree
mkdir -p "$scratch"

# A fresh copy of the tree, every file with a new modification time (so that cargo never takes
# the previous mutant's build for this one's).
copy_tree() {
  rm -rf "$tree"
  mkdir -p "$tree"
  tar -C "$root" --exclude=./target --exclude='./target-*' --exclude=./.git \
    --exclude=./fuzz/target -cf - . | tar -C "$tree" -xmf -
}

# Applies mutants/$1.mutant to the copy; prints why not and fails if a block does not apply.
apply() {
  python3 - "$root/mutants/$1.mutant" "$tree" <<'EOF'
import pathlib, sys

spec, tree = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
lines = spec.read_text().split("\n")
blocks, i = [], 0
while i < len(lines):
    if not lines[i].startswith("@@ old "):
        i += 1
        continue
    path, old, new = lines[i][len("@@ old "):].strip(), [], []
    i += 1
    while i < len(lines) and lines[i] != "@@ new":
        old.append(lines[i])
        i += 1
    i += 1
    while i < len(lines) and lines[i] != "@@ end":
        new.append(lines[i])
        i += 1
    if i >= len(lines):
        sys.exit(f"{spec.name}: a block has no '@@ new' or no '@@ end'")
    i += 1
    blocks.append((path, "".join(l + "\n" for l in old), "".join(l + "\n" for l in new)))
if not blocks:
    sys.exit(f"{spec.name}: no '@@ old PATH' block")
for n, (path, old, new) in enumerate(blocks, 1):
    if not old.strip():
        sys.exit(f"{spec.name}: block {n} has an empty old snippet")
    base = tree / path
    files = sorted(base.rglob("*.rs")) if base.is_dir() else [base] if base.is_file() else []
    hits = [(f, f.read_text().count(old)) for f in files]
    total = sum(c for _, c in hits)
    if total != 1:
        where = ", ".join(f"{f.relative_to(tree)} ×{c}" for f, c in hits if c)
        sys.exit(f"{spec.name}: block {n}: the old snippet occurs {total} times under {path}"
                 + (f" ({where})" if where else "") + "; it must occur exactly once")
    f = next(f for f, c in hits if c)
    f.write_text(f.read_text().replace(old, new, 1))
    print(f"{spec.name}: block {n} applied to {f.relative_to(tree)}")
EOF
}

# Builds and runs the sweep in the copy; sets $outcome to "passed", "failed", "build failed".
run_sweep() {
  local log=$1
  outcome=
  if ! (cd "$tree" && "${cargo_test[@]}" --no-run) >>"$log" 2>&1; then
    outcome="build failed"
    return
  fi
  if (cd "$tree" && "${cargo_test[@]}" "$sweep" -- --exact) >>"$log" 2>&1; then
    outcome=passed
  else
    outcome=failed
  fi
}

# The first broken invariant in a log: "seed N: what", or the first panic.
first_failure() {
  local line
  line=$(grep -m1 -oE 'seed [0-9]+ broke an invariant at [^:]*: .*' "$1" || true)
  if [ -n "$line" ]; then
    echo "$line" | sed -E 's/^seed ([0-9]+) broke an invariant at [^:]*: /seed \1: /' | cut -c1-150
  else
    grep -m1 -E "panicked at|error(\[E[0-9]+\])?:" "$1" | cut -c1-150 || echo "(see $1)"
  fi
}

rows=()
status=0
start=$(date +%s)

if [ "$baseline" = 1 ]; then
  log=$scratch/baseline.log
  : >"$log"
  copy_tree
  echo "== baseline (no mutant): building and sweeping $PISWARM_SIM_SEEDS seeds"
  run_sweep "$log"
  if [ "$outcome" != passed ]; then
    echo "the unmutated simulator does not pass ($outcome): $(first_failure "$log")" >&2
    echo "log: $log" >&2
    exit 1
  fi
  rows+=("(none)|—|passed|—")
fi

for name in "${names[@]}"; do
  log=$scratch/$name.log
  : >"$log"
  copy_tree
  echo "== $name"
  if ! apply "$name" >>"$log" 2>&1; then
    cat "$log" >&2
    rows+=("$name|NO|—|$(tail -n1 "$log" | cut -c1-150)")
    status=1
    continue
  fi
  if [ "$apply_only" = 1 ]; then
    rows+=("$name|yes|not run|—")
    continue
  fi
  t0=$(date +%s)
  run_sweep "$log"
  t1=$(date +%s)
  case $outcome in
    failed)
      failure=$(first_failure "$log")
      expect=$(sed -n 's/^expect: //p' "$root/mutants/$name.mutant" | head -n1)
      if [ -n "$expect" ] && [[ $failure != *"$expect"* ]]; then
        failure="$failure (expected: $expect)"
      fi
      rows+=("$name|yes|killed ($((t1 - t0)) s)|$failure")
      ;;
    passed)
      rows+=("$name|yes|SURVIVED|$PISWARM_SIM_SEEDS seeds passed")
      status=1
      ;;
    *)
      rows+=("$name|yes|BUILD FAILED|$(first_failure "$log")")
      status=1
      ;;
  esac
  echo "   $outcome"
done

echo
echo "| Mutant | Applied | Simulator | First failing seed: invariant |"
echo "|---|---|---|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r m a r f <<<"$row"
  echo "| $m | $a | $r | ${f//|/\\|} |"
done
echo
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'not a git tree')
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1 && ! git -C "$root" diff --quiet HEAD; then
  commit="$commit with uncommitted changes"
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $commit, $cpu, $(nproc) CPUs, $(($(date +%s) - start)) s in all; logs in $scratch"
if [ "$status" != 0 ]; then
  echo "mutants.sh: some mutants were not killed (see the table)" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Runs deploy/slurm/piswarm-workers.sbatch for real, on a single-node Slurm cluster made on this
# machine, against real coordinators on 127.0.0.1. CI runs it after the tests (.ci/run).
#
# The cluster: Debian's slurmctld, slurmd and munge (installed with apt-get when missing), one
# node (this host, its CPUs), select/cons_tres, proctrack/linuxproc and task/none (no cgroups
# needed), every file and socket in a temporary directory (no system configuration is read or
# changed), on free ports. The recipe is submitted as written: only environment variables and
# sbatch flags change. What it checks:
#   1. exact:    `sbatch --array=0-3 --cpus-per-task=1` (4 tasks, 2 run at a time) against
#                `serve --exit-when-done`, with PISWARM_TOKEN exported empty: every task connects
#                without a token and ends COMPLETED, the tasks that start after the coordinator
#                has gone included (PISWARM_DONE_FILE), and final.json equals `piswarm run
#                --json` of the same job and the closed forms of the sums;
#   2. late:     a task submitted after that coordinator exited ends COMPLETED at once
#                (PISWARM_DONE_FILE, a 10-minute retry budget left untouched);
#   3. race:     a task whose worker already waits for a coordinator that is gone ends as soon as
#                final.json appears;
#   4. scancel:  against a coordinator with a token (PISWARM_TOKEN_FILE), tasks cancelled mid-run
#                give their intervals back while the coordinator keeps serving, and a second
#                array finishes the run, again equal to `piswarm run --json`;
#   5. answer:   a task that starts after that run completed, without PISWARM_DONE_FILE, gets the
#                coordinator's `done job_complete` and ends COMPLETED at once.
# Every wait has a deadline; everything started (munged, slurmctld, slurmd, the coordinators,
# the tasks) is stopped on exit, whatever happens. Prints one line per check and
# "slurm: N passed, M failed"; exits non-zero if any check fails.
#
# Needs root (the daemons, apt-get). Environment: PISWARM_BIN (default target/release/piswarm),
# PISWARM_SLURM_TERMS and PISWARM_SLURM_CHUNK (the job; by default about 10 s of this machine's
# cores, at least 5e10 terms, in 1000 intervals, so that the scancel lands mid-run however fast),
# PISWARM_SLURM_KEEP=1 (keep the temporary directory, with every log), PISWARM_SLURM_RECIPE (another
# job script, e.g. an older version, to see what the test catches).
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(dirname "${deploy_dir}")"
recipe="${PISWARM_SLURM_RECIPE:-${deploy_dir}/slurm/piswarm-workers.sbatch}"
terms="${PISWARM_SLURM_TERMS:-}"
chunk="${PISWARM_SLURM_CHUNK:-}"
# A task that "exits at once" does so within this many seconds (its retry budget is 10 minutes).
quick=30

passed=0
failed=0
report() {
  printf '%-5s %-16s %s\n' "$1" "$2" "$3"
  if [[ "$1" == ok ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
}
note() {
  echo "test-cluster: $*" >&2
}
die() {
  note "$*"
  report FAIL setup "$*"
  exit 1
}

if [[ "$(id -u)" -ne 0 ]]; then
  echo "test-cluster: needs root (it starts munged, slurmctld and slurmd, and may apt-get install them)" >&2
  exit 2
fi
piswarm="${PISWARM_BIN:-${repo_dir}/target/release/piswarm}"
[[ "${piswarm}" == /* ]] || piswarm="${PWD}/${piswarm}"
[[ -x "${piswarm}" ]] || die "no piswarm binary at ${piswarm} (build it, or set PISWARM_BIN)"
unset PISWARM_TOKEN PISWARM_TOKEN_FILE PISWARM_DONE_FILE PISWARM_RETRY_FOR PISWARM_TLS_CA

# --- Slurm and munge -----------------------------------------------------------------------------

missing=()
for tool in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  note "installing ${missing[*]} from Debian"
  timeout 600 apt-get update -qq >/dev/null 2>&1 || true
  timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null 2>&1 || die "apt-get install ${missing[*]} failed"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/piswarm-slurm.XXXXXX")"
# munged wants its socket's directory searchable by everyone.
chmod 0755 "${work}"
# Every process this script starts after this line carries the marker in its environment; the
# last step of the cleanup stops any that is left (a task's slurmstepd outlives slurmd).
export PISWARM_SLURM_TEST="${work}"
export SLURM_CONF="${work}/slurm.conf"

pids=()          # what to stop at the end, in reverse order
jobs_submitted=()

# stop_pid PID: SIGTERM, up to 15 s for it to end, then SIGKILL.
stop_pid() {
  local pid="$1" i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < 75; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL "${pid}" 2>/dev/null || true
}

# marked_pids: the processes whose environment carries this run's marker (read with builtins
# only, so that no helper process of ours is among them).
marked_pids() {
  local dir env
  for dir in /proc/[0-9]*; do
    [[ "${dir#/proc/}" == "$$" ]] && continue
    env=""
    { mapfile -d '' -t env <"${dir}/environ"; } 2>/dev/null || continue
    local entry
    for entry in "${env[@]}"; do
      if [[ "${entry}" == "PISWARM_SLURM_TEST=${work}" ]]; then
        echo "${dir#/proc/}"
        break
      fi
    done
  done
}

cleanup() {
  local rc=$? i pid left
  trap - EXIT INT TERM
  if [[ ${#jobs_submitted[@]} -gt 0 ]] && [[ -n "${ctld_pid:-}" ]]; then
    timeout 10 scancel "${jobs_submitted[@]}" >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
      left="$(timeout 10 squeue -h -o %i 2>/dev/null || true)"
      [[ -z "${left}" ]] && break
      sleep 0.2
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${pids[i]}"
  done
  # Anything left (a slurmstepd, a worker): by process id, found by the marker.
  for pid in $(marked_pids); do
    note "stopping leftover process ${pid}: $(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
    kill -KILL "${pid}" 2>/dev/null || true
  done
  if [[ "${failed}" -gt 0 || "${rc}" -ne 0 ]]; then
    note "logs (last lines of each) in ${work}:"
    for log in "${work}"/*.log "${work}"/*/*.out "${work}"/*/*.log; do
      [[ -f "${log}" ]] || continue
      echo "---- ${log#"${work}/"}" >&2
      tail -n 15 "${log}" >&2
    done
  fi
  if [[ "${PISWARM_SLURM_KEEP:-}" == 1 ]]; then
    note "kept ${work}"
  else
    rm -rf "${work}"
  fi
  echo "slurm: ${passed} passed, ${failed} failed"
  if [[ "${rc}" -eq 0 && "${failed}" -gt 0 ]]; then
    rc=1
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds; fails after SECONDS.
wait_until() {
  local limit="$1" what="$2" deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then
      note "gave up after ${limit} s waiting for ${what}"
      return 1
    fi
    sleep 0.2
  done
}

# free_port: a TCP port nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ctld_port="$(free_port)"
slurmd_port="$(free_port)"
while [[ "${slurmd_port}" == "${ctld_port}" ]]; do slurmd_port="$(free_port)"; done
host="$(hostname -s)"
cpus="$(nproc)"
mkdir -p "${work}/ctld" "${work}/slurmd"
head -c 1024 /dev/urandom >"${work}/munge.key"
chmod 0600 "${work}/munge.key"
cat >"${SLURM_CONF}" <<EOF
ClusterName=piswarmtest
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${work}/munge.socket
CredType=cred/munge
StateSaveLocation=${work}/ctld
SlurmdSpoolDir=${work}/slurmd
SlurmctldPidFile=${work}/slurmctld.pid
SlurmdPidFile=${work}/slurmd.pid
SlurmctldLogFile=${work}/slurmctld.log
SlurmdLogFile=${work}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${work}/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=node1 NodeAddr=127.0.0.1 NodeHostname=${host} CPUs=${cpus} RealMemory=2048 State=UNKNOWN
PartitionName=test Nodes=node1 Default=YES MaxTime=INFINITE State=UP
EOF

munged --foreground --force --socket="${work}/munge.socket" --key-file="${work}/munge.key" \
  --pid-file="${work}/munged.pid" --log-file="${work}/munged.log" \
  --seed-file="${work}/munged.seed" >"${work}/munged.out" 2>&1 &
pids+=($!)
wait_until 20 "munged's socket" test -S "${work}/munge.socket" || die "munged did not start"
slurmctld -D -c -f "${SLURM_CONF}" >"${work}/slurmctld.out" 2>&1 &
ctld_pid=$!
pids+=("${ctld_pid}")
slurmd -D -N node1 -f "${SLURM_CONF}" >"${work}/slurmd.out" 2>&1 &
pids+=($!)

node_idle() {
  [[ "$(timeout 10 sinfo -h -n node1 -o %t 2>/dev/null)" == idle ]]
}
wait_until 60 "node1 to be idle" node_idle || die "the cluster did not come up (node not idle)"
versions="slurm $(slurmctld -V | awk '{print $2}'), munge $(munged --version | awk '{print $1}' | sed 's/^munge-//')"
report ok cluster "${versions}: slurmctld, slurmd and munged up, node1 idle with ${cpus} CPUs"

# --- Helpers for jobs and coordinators ----------------------------------------------------------

# submit DIR ARGS...: sbatch the recipe (output in DIR); sets job to the job's id.
submit() {
  local dir="$1"
  shift
  job="$(timeout 30 sbatch --parsable --chdir="${dir}" --output="${dir}/task-%A_%a.out" "$@" \
    "${recipe}")" || die "sbatch $* failed"
  job="${job%%;*}"
  jobs_submitted+=("${job}")
  states=""
}

job_gone() {
  local left
  left="$(timeout 10 squeue -h -j "$1" -o %i 2>/dev/null)" || return 1
  [[ -z "${left}" ]]
}

# give_up JOB: cancels what is left of a job whose check failed, so that later checks get the CPUs.
give_up() {
  timeout 10 scancel "$1" >/dev/null 2>&1 || true
  wait_until 60 "job $1 to be cancelled" job_gone "$1" || true
}

# task_states JOB: one line per array task, "TASK STATE EXIT RUNTIME_S", from slurmctld.
task_states() {
  local line task state exit_code runtime h m s
  timeout 10 scontrol -o show job "$1" | while read -r line; do
    task="" state="?" exit_code="?" runtime="?"
    if [[ "${line}" =~ ArrayTaskId=([0-9]+) ]]; then
      task="${BASH_REMATCH[1]}"
    else
      continue
    fi
    if [[ "${line}" =~ JobState=([A-Z_]+) ]]; then
      state="${BASH_REMATCH[1]}"
    fi
    if [[ "${line}" =~ ExitCode=([0-9:]+) ]]; then
      exit_code="${BASH_REMATCH[1]}"
    fi
    if [[ "${line}" =~ RunTime=([0-9]+-)?([0-9]+):([0-9]+):([0-9]+) ]]; then
      h=$((10#${BASH_REMATCH[2]})) m=$((10#${BASH_REMATCH[3]})) s=$((10#${BASH_REMATCH[4]}))
      runtime=$((h * 3600 + m * 60 + s))
    fi
    echo "${task} ${state} ${exit_code} ${runtime}"
  done | sort -n
}

# all_completed JOB COUNT [MAX_RUNTIME_S]: every one of COUNT tasks COMPLETED with exit 0 (within
# MAX_RUNTIME_S each); prints the states.
all_completed() {
  local job="$1" count="$2" max="${3:-}" states bad n
  states="$(task_states "${job}")"
  awk '{print "      " $0}' <<<"${states}"
  n="$(echo "${states}" | grep -c . || true)"
  bad="$(echo "${states}" | awk -v max="${max}" \
    '$2 != "COMPLETED" || $3 != "0:0" || (max != "" && $4 > max + 0)' || true)"
  [[ "${n}" -eq "${count}" && -z "${bad}" ]]
}

# start_serve DIR ARGS...: a coordinator on 127.0.0.1 with its store and results in DIR; sets
# serve_pid and serve_addr.
start_serve() {
  local dir="$1"
  shift
  serve_addr="127.0.0.1:$(free_port)"
  (cd "${dir}" && exec "${piswarm}" serve --listen "${serve_addr}" --db "${dir}/piswarm.db" \
    --out "${dir}" --quiet --terms "${terms}" --chunk "${chunk}" "$@") >"${dir}/serve.log" 2>&1 &
  serve_pid=$!
  pids+=("${serve_pid}")
  wait_until 30 "serve to listen" grep -q 'coordinator listening on' "${dir}/serve.log"
}

process_gone() {
  ! kill -0 "$1" 2>/dev/null
}

# compare_final FILE: FILE (a final.json) against the reference and the closed forms.
compare_final() {
  python3 - "$1" "${work}/reference.json" <<'PYTHON'
import json, sys
got, ref = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["terms", "chunk", "intervals", "even_sum", "odd_sum", "pi", "pi_error", "pi_bound",
        "correct_digits", "pi_corrected"]
diff = [f"{k}: {got.get(k)!r} != {ref.get(k)!r}" for k in keys if got.get(k) != ref.get(k)]
n = got["terms"]
evens, odds = (n + 1) // 2, n // 2  # how many even and odd indexes in [0, n-1]
closed = {"even_sum": str(evens * (evens - 1)), "odd_sum": str(odds * odds)}
diff += [f"{k}: {got[k]} != closed form {v}" for k, v in closed.items() if got[k] != v]
if diff:
    print("; ".join(diff))
    sys.exit(1)
print(f"{got['intervals']} intervals, {got['workers']} workers: sums, pi {got['pi']!r}, "
      f"pi_bound and pi_corrected equal to `piswarm run --json`; sums equal to the closed forms")
PYTHON
}

# status KEY: a field of `piswarm status` (the dashboard's API), e.g. run.in_flight.
status() {
  timeout 10 "${piswarm}" status --http "${http_addr}" 2>/dev/null | python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value[part]
print(json.dumps(value))' "$1"
}

status_at_least() {
  local value
  value="$(status "$1")" || return 1
  ((value >= $2))
}

status_is() {
  [[ "$(status "$1" 2>/dev/null)" == "$2" ]]
}

# The job: about 10 s for two one-core tasks, measured here, so that a cancel after 5% of the
# intervals (checked every 0.2 s) lands well before the end on a fast machine as on a slow one.
if [[ -z "${terms}" ]]; then
  rate="$("${piswarm}" run --json --terms 1e10 2>/dev/null | python3 -c \
    'import json, sys; print(int(json.load(sys.stdin)["terms_per_s"]))')" ||
    die "piswarm run --terms 1e10 failed"
  terms=$(((rate * 10 / 1000000000 + 1) * 1000000000))
  ((terms >= 50000000000)) || terms=50000000000
  chunk="${chunk:-$((terms / 1000))}"
fi
[[ -n "${chunk}" ]] || die "PISWARM_SLURM_TERMS needs PISWARM_SLURM_CHUNK"

# The reference: the same job in one process (bit-identical whatever the workers).
ref_started=${SECONDS}
"${piswarm}" run --json --terms "${terms}" --chunk "${chunk}" >"${work}/reference.json" \
  2>"${work}/reference.log" || die "piswarm run --terms ${terms} --chunk ${chunk} failed"
note "the job: ${terms} terms in chunks of ${chunk}; piswarm run of it took $((SECONDS - ref_started)) s"

# --- 1. A run completes exactly; an empty PISWARM_TOKEN; tasks that start late -----------------

a="${work}/exact"
mkdir -p "${a}"
started=${SECONDS}
if start_serve "${a}" --no-http --exit-when-done; then
  exact_serve_pid="${serve_pid}"
  PISWARM_COORDINATOR="${serve_addr}" PISWARM_BIN="${piswarm}" PISWARM_TOKEN='' \
    PISWARM_DONE_FILE="${a}/final.json" submit "${a}" --array=0-3 --cpus-per-task=1
  if wait_until 300 "job ${job} to end" job_gone "${job}"; then
    elapsed=$((SECONDS - started))
    if [[ "$(grep -l 'connecting without a token' "${a}"/task-*.out | wc -l)" -eq 4 ]] &&
      ! grep -q "invalid value" "${a}"/task-*.out; then
      report ok empty-token "PISWARM_TOKEN='' exported: every task connected without a token"
    else
      grep -h "invalid value" "${a}"/task-*.out | sort -u | sed 's/^/      /'
      report FAIL empty-token "with PISWARM_TOKEN='' exported, a task did not connect without a token"
    fi
    if states="$(all_completed "${job}" 4)"; then
      report ok exact-tasks "sbatch --array=0-3 --cpus-per-task=1: 4 tasks COMPLETED 0:0 on ${cpus} CPUs in ${elapsed} s (each $(awk '{print $4}' <<<"${states}" | paste -sd ,) s)"
    else
      echo "${states}"
      report FAIL exact-tasks "not every task ended COMPLETED with exit 0"
    fi
    serve_rc=0
    if wait_until 60 "the coordinator to exit" process_gone "${exact_serve_pid}"; then
      wait "${exact_serve_pid}" || serve_rc=$?
      if [[ "${serve_rc}" -ne 0 ]]; then
        report FAIL exact-result "serve --exit-when-done exited ${serve_rc}"
      elif result="$(compare_final "${a}/final.json" 2>&1)"; then
        report ok exact-result "serve --exit-when-done exited 0; final.json: ${result}"
      else
        report FAIL exact-result "final.json: ${result}"
      fi
    else
      report FAIL exact-result "serve --exit-when-done did not exit: the run did not complete"
    fi
  else
    report FAIL exact-tasks "job ${job} did not end"
    give_up "${job}"
  fi
else
  report FAIL exact-tasks "the coordinator did not start"
fi

# The final.json of a complete run of this job, for the next two checks: the first run's (or, if
# it failed, one made from the reference, which has the same fields).
done_file="${a}/final.json"
if [[ ! -f "${done_file}" ]]; then
  done_file="${work}/reference-final.json"
  cp "${work}/reference.json" "${done_file}"
fi

# --- 2. A task that starts after the coordinator exited ----------------------------------------

late="${work}/late"
mkdir -p "${late}"
gone_addr="127.0.0.1:$(free_port)" # nothing listens there: the coordinator has gone
PISWARM_COORDINATOR="${gone_addr}" PISWARM_BIN="${piswarm}" \
  PISWARM_DONE_FILE="${done_file}" submit "${late}" --array=0 --cpus-per-task=1
if wait_until 60 "job ${job} to end" job_gone "${job}" &&
  states="$(all_completed "${job}" 1 "${quick}")" &&
  grep -q 'the run is complete' "${late}"/task-*.out; then
  report ok late-task "coordinator gone, PISWARM_RETRY_FOR 10m: the task ended COMPLETED in $(awk '{print $4}' <<<"${states}") s (PISWARM_DONE_FILE)"
else
  echo "${states:-}"
  report FAIL late-task "a task started after the coordinator exited did not end COMPLETED at once"
  give_up "${job}"
fi

# --- 3. A task whose worker already waits when the run completes --------------------------------

race="${work}/race"
mkdir -p "${race}"
PISWARM_COORDINATOR="${gone_addr}" PISWARM_BIN="${piswarm}" \
  PISWARM_DONE_FILE="${race}/final.json" submit "${race}" --array=0 --cpus-per-task=1
if wait_until 60 "the worker of job ${job} to retry" \
  grep -qs 'cannot reach the coordinator' "${race}/task-${job}_0.out"; then
  cp "${done_file}" "${race}/final.json.tmp"
  mv "${race}/final.json.tmp" "${race}/final.json"
  appeared=${SECONDS}
  if wait_until 60 "job ${job} to end" job_gone "${job}" &&
    states="$(all_completed "${job}" 1)" &&
    grep -q 'stopping the worker' "${race}/task-${job}_0.out"; then
    report ok race-task "a worker retrying a gone coordinator: the task ended COMPLETED $((SECONDS - appeared)) s after final.json appeared"
  else
    echo "${states:-}"
    report FAIL race-task "the task did not end COMPLETED once final.json appeared"
    give_up "${job}"
  fi
else
  report FAIL race-task "the task's worker never tried to connect"
  give_up "${job}"
fi

# --- 4. scancel mid-run, then a second array finishes the run ----------------------------------

b="${work}/cancel"
mkdir -p "${b}"
(umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"${b}/token")
http_addr="127.0.0.1:$(free_port)"
if PISWARM_TOKEN="$(<"${b}/token")" start_serve "${b}" --http "${http_addr}"; then
  cancel_serve_pid="${serve_pid}"
  total="$(status run.intervals_total)"
  # With PISWARM_DONE_FILE (not there yet): the job script, not the worker, gets Slurm's SIGTERM
  # first and passes it on. The second array runs the worker with exec.
  PISWARM_COORDINATOR="${serve_addr}" PISWARM_BIN="${piswarm}" PISWARM_TOKEN_FILE="${b}/token" \
    PISWARM_DONE_FILE="${b}/final.json" submit "${b}" --array=0-1 --cpus-per-task=1
  if wait_until 120 "results from job ${job}" status_at_least run.intervals_done $((total / 20)); then
    timeout 30 scancel "${job}" || true
    if wait_until 60 "job ${job} to end" job_gone "${job}" &&
      wait_until 90 "the intervals to come back" status_is run.in_flight 0; then
      done_then="$(status run.intervals_done)"
      expired="$(status run.leases_expired)"
      states="$(task_states "${job}")"
      if [[ "$(status server.running)" == true && "${done_then}" -lt "${total}" &&
        "${expired}" == 0 ]] && ! awk '$2 != "CANCELLED"' <<<"${states}" | grep -q .; then
        report ok scancel "2 tasks CANCELLED with ${done_then}/${total} intervals done: none in flight, none by a lease's expiry; the coordinator still serving"
      else
        echo "${states}"
        report FAIL scancel "after scancel: ${done_then}/${total} done, ${expired} leases expired, serving: $(status server.running)"
      fi
    else
      report FAIL scancel "the tasks did not end or the intervals did not come back"
    fi
    started=${SECONDS}
    PISWARM_COORDINATOR="${serve_addr}" PISWARM_BIN="${piswarm}" \
      PISWARM_TOKEN_FILE="${b}/token" submit "${b}" --array=0-1 --cpus-per-task=1
    if wait_until 300 "job ${job} to end" job_gone "${job}" &&
      states="$(all_completed "${job}" 2)" &&
      wait_until 30 "final.json" test -f "${b}/final.json" &&
      result="$(compare_final "${b}/final.json" 2>&1)"; then
      report ok resubmit "a second array COMPLETED the run in $((SECONDS - started)) s: ${result}"
    else
      echo "${states:-}"
      report FAIL resubmit "the second array did not complete the run exactly: ${result:-}"
    fi
    # 5. The coordinator is still there: its answer ends a late task.
    answer="${work}/answer"
    mkdir -p "${answer}"
    PISWARM_COORDINATOR="${serve_addr}" PISWARM_BIN="${piswarm}" \
      PISWARM_TOKEN_FILE="${b}/token" submit "${answer}" --array=0 --cpus-per-task=1
    if wait_until 60 "job ${job} to end" job_gone "${job}" &&
      states="$(all_completed "${job}" 1 "${quick}")" &&
      grep -q 'the job is complete' "${answer}"/task-*.out; then
      report ok answer-task "a task after the run, coordinator still serving: COMPLETED in $(echo "${states}" | awk '{print $4}') s (done job_complete)"
    else
      echo "${states:-}"
      report FAIL answer-task "a task after the run did not get the coordinator's answer"
    fi
  else
    report FAIL scancel "no results arrived"
  fi
  stop_pid "${cancel_serve_pid}"
else
  report FAIL scancel "the coordinator did not start"
fi

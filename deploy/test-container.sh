#!/usr/bin/env bash
# Builds deploy/Containerfile with podman from a local Debian 12 base and runs a complete run across
# two containers: `serve` in one, `worker` in another, over the host's loopback. CI runs it after
# the Slurm test (.ci/run); docs/deployment.md, "Run for real", says what it shows and what not.
#
# Nothing is pulled from a container registry (docker.io and gcr.io are not reachable here):
#   - the base is a Debian 12 (bookworm) root made by `debootstrap --variant=minbase` from Debian's
#     packages and `podman import`ed as localhost/piswarm-debian:bookworm (kept between runs:
#     debootstrap takes about a minute; `podman rmi localhost/piswarm-debian:bookworm` drops it);
#   - the Rust image is not reachable either, and Debian 12's rustc (1.63) is older than piswarm's
#     rust-version, so the image is built with BINARY_FROM=prebuilt around the binary the tests
#     built (PISWARM_BIN, default target/release/piswarm), on that base for both stages.
# Then: the coordinator's container (token from the environment, store on a named volume,
# --read-only, --cap-drop ALL, no-new-privileges, user 65532) with --exit-when-done; a worker's
# container; both must exit 0, and `export --final`, run in a third container on the volume,
# must equal `piswarm run --json` of the same job.
#
# This machine is a gVisor sandbox, which shapes three flags (docs/deployment.md): runc instead of
# crun (crun 1.8 refuses its cgroup hierarchy: "cgroups in hybrid mode not supported"), explicit
# --ulimit values within the hard limits (gVisor refuses podman's default RLIMIT_NOFILE and
# RLIMIT_NPROC of 1048576 with EPERM), and --network=host (no CNI plugins or netavark).
#
# Needs root. Installs podman, runc and debootstrap from Debian when missing. Every wait has a
# deadline; the containers, the volume and the image are removed on exit (the base is kept).
# Prints one line per check and "container: N passed, M failed"; exits non-zero if any check
# fails.
# `--base-only`: only the tools and the base, no binary needed (then "container: 1 passed").
# Environment: PISWARM_BIN, PISWARM_DEBIAN_MIRROR (default: the mirror apt uses for bookworm here,
# or debootstrap's own).
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "${deploy_dir}")"
base_image=localhost/piswarm-debian:bookworm
image=localhost/piswarm:test
terms=1e10
chunk=1e8

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
  echo "test-container: $*" >&2
}
die() {
  note "$*"
  report FAIL setup "$*"
  exit 1
}

# --base-only: only install what is missing and make the Debian base (CI does it in the
# background while the tests run), then exit.
base_only=false
if [[ "${1:-}" == --base-only ]]; then
  base_only=true
elif [[ $# -gt 0 ]]; then
  echo "usage: test-container.sh [--base-only]" >&2
  exit 2
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "test-container: needs root (podman as root, debootstrap, apt-get)" >&2
  exit 2
fi
piswarm="${PISWARM_BIN:-${repo_dir}/target/release/piswarm}"
[[ "${piswarm}" == /* ]] || piswarm="${PWD}/${piswarm}"
"${base_only}" || [[ -x "${piswarm}" ]] || die "no piswarm binary at ${piswarm} (build it, or set PISWARM_BIN)"

missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  note "installing ${missing[*]} from Debian"
  timeout 600 apt-get update -qq >/dev/null 2>&1 || true
  timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null 2>&1 || die "apt-get install ${missing[*]} failed"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/piswarm-container.XXXXXX")"
# The build's stages (untagged images) that were there before: the cleanup leaves them.
dangling_before="$(timeout 60 podman images -a -q --filter dangling=true 2>/dev/null | tr '\n' ' ' || true)"
name="piswarm-test-$$"
volume="piswarm-test-data-$$"
podman=(timeout 300 podman --runtime runc)
# Within the hard limits (see above); serve raises its soft open-file limit to the hard one.
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
hardening=(--read-only --cap-drop ALL --security-opt no-new-privileges)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  timeout 60 podman rm -f -t 5 "${name}-serve" "${name}-worker" "${name}-export" >/dev/null 2>&1 || true
  timeout 60 podman volume rm -f "${volume}" >/dev/null 2>&1 || true
  timeout 60 podman rmi -f "${image}" >/dev/null 2>&1 || true
  # The build's intermediate images (its stages), untagged: those that were not there before it.
  local id
  for id in $(timeout 60 podman images -a -q --filter dangling=true 2>/dev/null || true); do
    [[ " ${dangling_before} " == *" ${id} "* ]] ||
      timeout 60 podman rmi -f "${id}" >/dev/null 2>&1 || true
  done
  if [[ "${failed}" -gt 0 || "${rc}" -ne 0 ]]; then
    for log in "${work}"/*.log; do
      [[ -f "${log}" ]] || continue
      echo "---- ${log#"${work}/"}" >&2
      tail -n 20 "${log}" >&2
    done
  fi
  rm -rf "${work}"
  echo "container: ${passed} passed, ${failed} failed"
  if [[ "${rc}" -eq 0 && "${failed}" -gt 0 ]]; then
    rc=1
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

# --- The base and the image ----------------------------------------------------------------------

versions="podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n 1)"
started=${SECONDS}
if podman image exists "${base_image}"; then
  report ok base "${base_image} already here (made by an earlier run)"
else
  # The mirror apt already uses for bookworm, if any (debootstrap's default otherwise); the
  # $(...) in the format are apt's fields, not the shell's.
  # shellcheck disable=SC2016
  mirror="${PISWARM_DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
    'Created-By: Packages' 2>/dev/null | awk '$2 == "bookworm" {print $1; exit}' || true)}"
  if ! timeout 900 debootstrap --variant=minbase bookworm "${work}/root" ${mirror:+"${mirror}"} \
    >"${work}/debootstrap.log" 2>&1; then
    die "debootstrap --variant=minbase bookworm ${mirror:+from ${mirror} }failed"
  fi
  tar -C "${work}/root" -c . | timeout 300 podman import - "${base_image}" >"${work}/import.log" 2>&1 ||
    die "podman import failed"
  rm -rf "${work}/root"
  report ok base "debootstrap --variant=minbase bookworm, podman import: ${base_image} in $((SECONDS - started)) s"
fi

started=${SECONDS}
if "${base_only}"; then
  exit 0
fi
mkdir -p "${work}/context"
cp "${piswarm}" "${work}/context/piswarm"
if "${podman[@]}" build --network=host "${limits[@]}" -f "${deploy_dir}/Containerfile" \
  --build-arg BINARY_FROM=prebuilt --build-arg PREBUILT=piswarm \
  --build-arg BUILD_IMAGE="${base_image}" --build-arg RUNTIME_IMAGE="${base_image}" \
  -t "${image}" "${work}/context" >"${work}/build.log" 2>&1; then
  report ok build "${versions}: deploy/Containerfile with BINARY_FROM=prebuilt on ${base_image} in $((SECONDS - started)) s"
else
  die "podman build failed"
fi

# --- Two containers: a coordinator and a worker -------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
addr="127.0.0.1:$(free_port)"
PISWARM_TOKEN="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PISWARM_TOKEN

"${piswarm}" run --json --terms "${terms}" --chunk "${chunk}" >"${work}/reference.json" 2>/dev/null ||
  die "piswarm run failed"

started=${SECONDS}
"${podman[@]}" volume create "${volume}" >/dev/null
"${podman[@]}" run -d --name "${name}-serve" --network=host "${limits[@]}" "${hardening[@]}" \
  --tmpfs /tmp -v "${volume}:/var/lib/piswarm" -e PISWARM_TOKEN "${image}" \
  serve --listen "${addr}" --no-http --db /var/lib/piswarm/piswarm.db --out /var/lib/piswarm \
  --quiet --terms "${terms}" --chunk "${chunk}" --exit-when-done >/dev/null ||
  die "podman run (serve) failed"
"${podman[@]}" run --name "${name}-worker" --network=host "${limits[@]}" "${hardening[@]}" \
  -e PISWARM_TOKEN "${image}" worker --connect "${addr}" --retry-for 60s --name container \
  >"${work}/worker.log" 2>&1 && worker_rc=0 || worker_rc=$?
serve_rc="$("${podman[@]}" wait "${name}-serve" 2>/dev/null || echo "no exit")"
"${podman[@]}" logs "${name}-serve" >"${work}/serve.log" 2>&1 || true
user="$("${podman[@]}" inspect --format '{{.Config.User}}' "${image}" 2>/dev/null || true)"
if [[ "${worker_rc}" -eq 0 && "${serve_rc}" == 0 ]] && grep -q 'job is complete' "${work}/worker.log"; then
  report ok two-containers "serve --exit-when-done and worker (user ${user}, --read-only, --cap-drop ALL, token) both exited 0 in $((SECONDS - started)) s"
else
  report FAIL two-containers "worker exited ${worker_rc}, serve ${serve_rc}"
fi

if "${podman[@]}" run --name "${name}-export" --network=none "${limits[@]}" "${hardening[@]}" \
  -v "${volume}:/var/lib/piswarm" "${image}" export --db /var/lib/piswarm/piswarm.db --final \
  >"${work}/final.json" 2>"${work}/export.log" &&
  result="$(python3 - "${work}/final.json" "${work}/reference.json" <<'PYTHON'
import json, sys
got, ref = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["terms", "chunk", "intervals", "even_sum", "odd_sum", "pi", "pi_bound", "pi_corrected"]
diff = [f"{k}: {got.get(k)!r} != {ref.get(k)!r}" for k in keys if got.get(k) != ref.get(k)]
if diff:
    print("; ".join(diff))
    sys.exit(1)
print(f"{got['intervals']} intervals, pi {got['pi']!r}: equal to `piswarm run --json`")
PYTHON
)"; then
  report ok result "export --final from the volume, in a third container: ${result}"
else
  report FAIL result "the run in the volume differs from piswarm run --json: ${result:-export failed}"
fi

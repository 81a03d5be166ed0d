#!/usr/bin/env bash
# One call verifies bridgedfast on a lent GPU: builds the extension (CUDA, for this GPU's
# architecture) and the CMake/ctest core, runs every CUDA pytest case and ctest binary, runs the
# GPU benchmarks at real sizes, and writes OUT/gpu-check.md (machine, versions, every step's
# pass/fail with its time, every ours-vs-peer ratio). Offline; within a total time budget
# (default 480 s), each step under its own time limit, the report written even when a step
# fails, hangs or the script is interrupted.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--work DIR] [--wheels DIR]
#                                [--budget SECONDS] [--only STEP,STEP] [--limit STEP=SECONDS]
#
#   --dry-run   every step's plumbing on the CPU at tiny sizes (CI runs it; GPU-only steps are
#               marked skipped with the reason)
#   --out       where gpu-check.md, logs/ and results/ go (default benchmarks/results/gpu-check)
#   --work      scratch space: built models, datasets, installed wheels (default /tmp/bridgedfast-gpu-check)
#   --wheels    wheels to install before anything else (default: .whl/ at the repo root, if present);
#               those not installed at the same version, into WORK/site (on PYTHONPATH, ahead of site-packages)
#   --budget    total seconds for all steps (default 480; the report takes a few more)
#   --only      run only these steps (names as in the report), e.g. --only bench-generate-compile
#   --limit     override one step's time limit, e.g. --limit pytest-cuda=300 (repeatable)
# Environment: PYTHON (default python3), MAX_JOBS (compile jobs; default: the cores).
# Exit status: 0 when every step passed or was skipped, 1 when one failed or timed out, 2 for bad usage.
# benchmarks/README.md ("GPU check") says how to prepare .whl/ and how to read the report.
set -uo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(cd "$(dirname "$SELF")/.." && pwd)"
SKIP_RC=99  # a step's exit status for "skipped" (its note says why)

# Steps in report order; GPU limits in seconds (dry run: DRY_LIMIT for all).
STEPS=(info wheels build-ext cmake-build ctest sd-model pytest-cuda bench-augment bench-loader bench-train
       bench-generate bench-invert bench-generate-compile)
declare -A LIMIT=([info]=60 [wheels]=90 [build-ext]=300 [cmake-build]=240 [ctest]=90 [sd-model]=300
                  [pytest-cuda]=180 [bench-augment]=90 [bench-loader]=90 [bench-train]=120 [bench-generate]=150
                  [bench-invert]=120 [bench-generate-compile]=180)
DRY_LIMIT=150

# -- the body of each step (run as `gpu_check.sh __step NAME`, under `timeout`) ---------------------
note() { printf '%s\n' "$*" >> "$GC_OUT/notes/$GC_STEP.txt"; }
skip() { note "$*"; exit "$SKIP_RC"; }
bench_env() {  # per-step results folder and the command line recorded in the JSON
  export BRIDGEDFAST_BENCH_RESULTS="$GC_OUT/results/$GC_STEP"
  mkdir -p "$BRIDGEDFAST_BENCH_RESULTS"
  export BRIDGEDFAST_BENCH_COMMAND="$*"
  echo "\$ $*"
}
run_bench() { bench_env "$@"; "$@"; }
py_has() { "$PY" -c "import $1" >/dev/null 2>&1; }

step_info() {
  "$PY" - "$GC_OUT/machine.json" <<'EOF'
import importlib.metadata as md, json, os, platform, re, shutil, subprocess, sys
info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_cores": os.cpu_count()}
try:
    info["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    info["cpu"] = platform.machine()
for dist in ("torch", "torchvision", "diffusers", "transformers", "timm", "kornia", "onnx", "onnxruntime",
             "tensorrt", "xformers", "numpy", "pillow", "pytest"):
    try:
        info[dist] = md.version(dist)
    except md.PackageNotFoundError:
        info[dist] = None
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
if shutil.which("nvidia-smi"):
    info["driver"] = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).splitlines()[:1]
    info["driver"] = info["driver"][0] if info["driver"] else None
nvcc = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
m = re.search(r"release ([\d.]+)", run([nvcc, "--version"]) if nvcc else "")
info["nvcc"] = m.group(1) if m else None
m = re.search(r"version ([\d.]+)", run(["cmake", "--version"]) if shutil.which("cmake") else "")
info["cmake"] = m.group(1) if m else None
try:
    import torch
    info["torch_cuda"] = torch.version.cuda
    info["gpus"] = [dict(name=torch.cuda.get_device_name(i),
                         memory_gib=round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                         capability="%d.%d" % torch.cuda.get_device_capability(i))
                    for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
except Exception as exc:  # reported, not fatal: the build step will say more
    info["torch_error"] = repr(exc)
    info["gpus"] = []
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF
  local ok=$?
  if [[ $GC_DRY == 1 ]]; then note "dry run: CPU only"; fi
  return $ok
}

step_wheels() {
  if [[ -z "$GC_WHEELS" ]]; then skip "no wheels folder (.whl/ at the repo root, or --wheels DIR)"; fi
  shopt -s nullglob
  local wheels=("$GC_WHEELS"/*.whl) todo=() w
  if (( ${#wheels[@]} == 0 )); then skip "no .whl files in $GC_WHEELS"; fi
  # A wheel whose distribution is installed at the same version is not needed; any other is
  # installed into WORK/site, which is on PYTHONPATH (ahead of site-packages).
  for w in "${wheels[@]}"; do
    if "$PY" - "$w" <<'EOF'; then todo+=("$w"); fi
import importlib.metadata as md, os, sys
name, version = os.path.basename(sys.argv[1]).split("-")[:2]
try:
    have = md.version(name)
except md.PackageNotFoundError:
    have = None
print(f"{name} {version}: " + ("installed already" if have == version else f"to install (machine: {have})"))
sys.exit(1 if have == version else 0)
EOF
  done
  if (( ${#todo[@]} == 0 )); then note "all ${#wheels[@]} carried wheels already installed"; return 0; fi
  "$PY" -m pip install --no-index --no-deps --no-warn-script-location --disable-pip-version-check -q \
      --target "$GC_SITE" "${todo[@]}" || return 1
  note "installed ${#todo[@]} wheel(s) into WORK/site: $(for w in "${todo[@]}"; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
}

step_build_ext() {
  cd "$REPO" || return 1
  if [[ $GC_DRY == 1 ]]; then
    local so
    so="$(ls bridgedfast/_C*.so 2>/dev/null | head -1)"
    if [[ -n "$so" && -z "$(find csrc setup.py -newer "$so" -type f | head -1)" ]]; then
      note "dry run: $so is newer than csrc/ and setup.py, not rebuilt"
      "$PY" -c "import torch, bridgedfast._C" && return 0
    fi
    BRIDGEDFAST_NO_CUDA=1 "$PY" setup.py build_ext --inplace || return 1
    "$PY" -c "import torch, bridgedfast._C" || return 1
    note "dry run: CPU kernels only"
    return 0
  fi
  export TORCH_CUDA_ARCH_LIST="$GC_ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
  "$PY" setup.py build_ext --inplace || return 1
  "$PY" - <<'EOF' || return 1
import sys
from bridgedfast import _ext
if not _ext.cuda_kernels_compiled():
    sys.exit(f"the extension was built without its CUDA kernels ({_ext.EXTENSION_ERROR})")
ops = _ext.registered_ops()
missing = [op for op, keys in ops.items() if "CUDA" not in keys]
print("ops:", ops)
if missing:
    sys.exit(f"ops without a CUDA kernel: {missing}")
EOF
  note "CUDA kernels compiled for sm_${GC_ARCH/./} (TORCH_CUDA_ARCH_LIST=$GC_ARCH)"
}

step_cmake_build() {
  command -v cmake >/dev/null || skip "cmake not found (carry the cmake wheel in .whl/, see benchmarks/README.md)"
  local args=(-S "$REPO" -B "$GC_CMAKE" -DCMAKE_BUILD_TYPE=Release)
  command -v ninja >/dev/null && args+=(-G Ninja)
  # The dry run configures as on a GPU (one architecture, the nvcc found), where nvcc exists.
  if [[ -n "$GC_NVCC" ]]; then
    args+=(-DCMAKE_CUDA_ARCHITECTURES="${GC_ARCH/./}" -DCMAKE_CUDA_COMPILER="$GC_NVCC")
  fi
  # A folder configured by another generator cannot be reused.
  if [[ -f "$GC_CMAKE/CMakeCache.txt" ]] && ! grep -q "CMAKE_GENERATOR:INTERNAL=$(command -v ninja >/dev/null && echo Ninja || echo Unix)" "$GC_CMAKE/CMakeCache.txt"; then
    rm -rf "$GC_CMAKE"
  fi
  local log
  log="$(cmake "${args[@]}" 2>&1)" || { echo "$log"; return 1; }
  echo "$log"
  note "$(grep -o "bridgedfast: .*" <<< "$log" | sed 's/^bridgedfast: //' | head -1)"
  if [[ $GC_DRY == 0 ]] && grep -q "CUDA kernels OFF" <<< "$log"; then
    note "no CUDA ctest binaries without nvcc (set CUDA_HOME or put nvcc on PATH)"
    return 1
  fi
  cmake --build "$GC_CMAKE" -j "${MAX_JOBS:-$(nproc)}"
}

step_ctest() {
  [[ -f "$GC_CMAKE/CTestTestfile.cmake" ]] || skip "no CMake build (the cmake-build step did not finish)"
  cd "$GC_CMAKE" || return 1
  local log rc
  log="$(ctest --output-on-failure --timeout 60 -j "${MAX_JOBS:-$(nproc)}" 2>&1)"
  rc=$?
  echo "$log"
  note "$(grep -E "tests passed|tests failed" <<< "$log" | tail -1)"
  if [[ $GC_DRY == 0 ]] && grep -q "cuda_test_.*Skipped" <<< "$log"; then
    note "CUDA ctest binaries skipped on a GPU machine: the GPU is not visible to them"
    return 1
  fi
  return $rc
}

step_sd_model() {
  # One random-weight model for the generation and inversion benchmarks, built while the
  # extension compiles: SD-1.5-sized on the GPU, the tiny one in a dry run.
  local kind=sd15_sized_stable_diffusion
  [[ $GC_DRY == 1 ]] && kind=tiny_stable_diffusion
  py_has diffusers || skip "diffusers is not installed (carry its wheel in .whl/)"
  "$PY" -c "import sys; from bridgedfast.testing import $kind; print($kind(sys.argv[1]))" "$GC_MODEL" || return 1
  note "$kind -> WORK/$(basename "$GC_MODEL")"
}

step_pytest_cuda() {
  cd "$REPO" || return 1
  local per_test=()
  py_has pytest_timeout && per_test=(--timeout 120)  # one hung case fails alone, not the whole step
  "$PY" -m pytest -m cuda tests -q -p no:cacheprovider -o addopts="" -rfEs "${per_test[@]}" \
      --junitxml="$GC_OUT/logs/pytest-cuda.xml"
  local rc=$?
  [[ $GC_DRY == 1 ]] && note "dry run: no GPU, so every CUDA case is collected and skipped"
  return $rc
}

step_bench_augment() {
  local args=(--device "$GC_DEVICE")
  if [[ $GC_DRY == 1 ]]; then args+=(--quick); else
    args+=(--batch 256 --size 224 --min-side 400 --max-side 512 --min-run-time 1 --threads "$GC_THREADS")
    py_has kornia || { args+=(--no-kornia); note "kornia not installed: no kornia row"; }
  fi
  run_bench "$PY" "$REPO/benchmarks/bench_augment.py" "${args[@]}"
}

step_bench_loader() {
  local args=(--device "$GC_DEVICE" --data "$GC_WORK/loader-data")
  if [[ $GC_DRY == 1 ]]; then args+=(--quick); else
    args+=(--images 512 --batch 128 --workers "$GC_THREADS" --rounds 3)
  fi
  run_bench "$PY" "$REPO/benchmarks/bench_loader.py" "${args[@]}"
}

step_bench_train() {
  local args=(--device "$GC_DEVICE" --data "$GC_WORK/train-data")
  if [[ $GC_DRY == 1 ]]; then args+=(--quick); else
    args+=(--model resnet50 --batch 256 --amp bf16 --workers "$GC_THREADS" --threads "$GC_THREADS" --blocks 2 --steps 8
           --min-run-time 2)
  fi
  run_bench "$PY" "$REPO/benchmarks/bench_train.py" "${args[@]}"
}

generate_args() {
  [[ -f "$GC_MODEL/model_index.json" ]] || skip "no model (the sd-model step did not finish)"
  py_has diffusers || skip "diffusers is not installed (carry its wheel in .whl/)"
  GEN_ARGS=(--device "$GC_DEVICE" --model "$GC_MODEL" --cache "$GC_WORK/cache")
  if [[ $GC_DRY == 1 ]]; then GEN_ARGS+=(--quick); else
    GEN_ARGS+=(--steps 50 --batches 16 --ours-batches 16 --images 32 --repeats 2 --threads "$GC_THREADS")
  fi
}

step_bench_generate() {
  generate_args
  local backends=(eager)
  if [[ $GC_DRY == 0 ]]; then
    if py_has tensorrt; then backends+=(tensorrt); else note "tensorrt not importable: eager only (compile is its own step)"; fi
  fi
  run_bench "$PY" "$REPO/benchmarks/bench_generate.py" "${GEN_ARGS[@]}" --backends "${backends[@]}"
}

step_bench_generate_compile() {
  [[ $GC_DRY == 1 ]] && skip "dry run: the compile backend needs a GPU (torch.compile with CUDA graphs)"
  generate_args
  run_bench "$PY" "$REPO/benchmarks/bench_generate.py" "${GEN_ARGS[@]}" --backends compile
}

step_bench_invert() {
  [[ -f "$GC_MODEL/model_index.json" ]] || skip "no model (the sd-model step did not finish)"
  py_has diffusers || skip "diffusers is not installed (carry its wheel in .whl/)"
  local args=(--device "$GC_DEVICE" --model "$GC_MODEL")
  if [[ $GC_DRY == 1 ]]; then args+=(--quick --resolution 32); else
    args+=(--batch 4 --resolution 512 --images 8 --rounds 3 --round-time 2 --threads "$GC_THREADS")
  fi
  run_bench "$PY" "$REPO/benchmarks/bench_invert.py" "${args[@]}"
}

if [[ "${1:-}" == "__step" ]]; then
  GC_STEP="$2"
  PY="$GC_PY"
  "step_${GC_STEP//-/_}"
  exit $?
fi

# -- the driver -----------------------------------------------------------------------------------
usage() { sed -n '2,/^set -uo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check.sh: $*" >&2; exit 2; }
DRY=0 OUT="" WORK="" WHEELS="" BUDGET=480 ONLY=""
declare -A OVERRIDE=()
while (( $# )); do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --work) WORK="${2:?--work needs a folder}"; shift ;;
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --only) ONLY=",${2:?--only needs step names},"; shift ;;
    --limit)
      [[ "${2:-}" =~ ^([a-z0-9-]+)=([0-9]+)$ ]] || die "--limit needs STEP=SECONDS, got '${2:-}'"
      OVERRIDE[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || die "--budget must be a whole number of seconds, got '$BUDGET'"
for name in "${!OVERRIDE[@]}" ${ONLY//,/ }; do
  [[ -n "${LIMIT[$name]+x}" ]] || die "unknown step '$name': choose from ${STEPS[*]}"
done
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "no Python interpreter '$PY' (set PYTHON)"
command -v timeout >/dev/null || die "needs coreutils' timeout"

OUT="$(mkdir -p "${OUT:-$REPO/benchmarks/results/gpu-check}" && cd "${OUT:-$REPO/benchmarks/results/gpu-check}" && pwd)"
WORK="$(mkdir -p "${WORK:-${TMPDIR:-/tmp}/bridgedfast-gpu-check}" && cd "${WORK:-${TMPDIR:-/tmp}/bridgedfast-gpu-check}" && pwd)"
if [[ -z "$WHEELS" && -d "$REPO/.whl" ]]; then WHEELS="$REPO/.whl"; fi
[[ -z "$WHEELS" || -d "$WHEELS" ]] || die "--wheels $WHEELS is not a folder"
rm -rf "$OUT/logs" "$OUT/notes" "$OUT/results" "$OUT/steps.tsv" "$OUT/machine.json" "$OUT/gpu-check.md"
mkdir -p "$OUT/logs" "$OUT/notes" "$OUT/results"
rm -rf "$WORK/pids" && mkdir -p "$WORK/pids"

START=$(date +%s)
DEADLINE=$(( START + BUDGET ))
stamp() { printf '[%s +%4ds]' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - START ))"; }
say() { echo "$(stamp) $*"; }

# What every step sees.
export GC_OUT="$OUT" GC_WORK="$WORK" GC_DRY="$DRY" GC_PY="$PY" GC_WHEELS="$WHEELS"
export GC_SITE="$WORK/site" GC_CMAKE="$WORK/cmake" GC_MODEL="$WORK/$([[ $DRY == 1 ]] && echo tiny-sd || echo sd15-sized-random)"
export GC_DEVICE="$([[ $DRY == 1 ]] && echo cpu || echo cuda)"
export GC_THREADS="$([[ $DRY == 1 ]] && echo 2 || echo $(( $(nproc) < 8 ? $(nproc) : 8 )))"
export PYTHONPATH="$REPO:$GC_SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$PATH:$GC_SITE/bin"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton" BRIDGEDFAST_CACHE="$WORK/cache"
GC_NVCC="$(command -v nvcc || true)"
for cand in "${CUDA_HOME:-}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
  [[ -z "$GC_NVCC" && -x "$cand" ]] && GC_NVCC="$cand"
done
[[ -n "$GC_NVCC" ]] && export PATH="$PATH:$(dirname "$GC_NVCC")"
export GC_NVCC GC_ARCH="9.0"  # the dry run builds as for an H100/H200

declare -A BG=()
REPORTED=0
finish() {
  local code=${1:-0}
  (( REPORTED )) && return
  REPORTED=1
  trap - INT TERM HUP
  local f
  for f in "$WORK"/pids/*; do [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null
  for name in "${STEPS[@]}"; do  # what an interruption kept from running is listed too
    if selected "$name" && ! grep -q "^$name	" "$OUT/steps.tsv" 2>/dev/null; then
      record "$name" interrupted 0 - "the script was stopped before this step finished"
    fi
  done
  if ! "$PY" "$REPO/benchmarks/gpu_check_report.py" "$OUT" --dry-run "$DRY" --budget "$BUDGET" \
       --elapsed "$(( $(date +%s) - START ))"; then
    { echo "# GPU check (the report script failed: the raw step table)"; echo; echo '```'; cat "$OUT/steps.tsv"; echo '```'; } \
      > "$OUT/gpu-check.md"
    code=1
  fi
  say "report: $OUT/gpu-check.md"
  if awk -F'\t' '$2 != "pass" && $2 != "skipped" { bad = 1 } END { exit !bad }' "$OUT/steps.tsv"; then code=1; fi
  exit "$code"
}
trap 'finish 1' INT TERM HUP
selected() { [[ -z "$ONLY" || "$ONLY" == *",$1,"* ]]; }

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$OUT/steps.tsv"; }

# run_step NAME: runs `gpu_check.sh __step NAME` under timeout; records pass/fail/timeout/skipped.
run_step() {
  local name=$1
  selected "$name" || return 0
  local limit=${OVERRIDE[$name]:-$([[ $DRY == 1 ]] && echo $DRY_LIMIT || echo "${LIMIT[$name]}")}
  local left=$(( DEADLINE - $(date +%s) ))
  if (( left < 10 )); then
    record "$name" skipped 0 "$limit" "out of time (budget ${BUDGET}s)"
    say "$name: skipped, out of time"
    return 0
  fi
  (( limit > left )) && limit=$left
  say "$name: start (limit ${limit}s)"
  local t0 t1 rc status note
  t0=$(date +%s.%N)
  # In the background and waited for, so that a signal to this script is handled at once.
  timeout -k 10 "$limit" bash "$SELF" __step "$name" > "$OUT/logs/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$WORK/pids/$name"
  wait "$pid"
  rc=$?
  rm -f "$WORK/pids/$name"
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=pass ;;
    "$SKIP_RC") status=skipped ;;
    124|137) status=timeout; echo "(killed after the step's ${limit}s limit)" >> "$OUT/logs/$name.log" ;;
    *) status=fail ;;
  esac
  note=""
  [[ -f "$OUT/notes/$name.txt" ]] && note="$(tr '\n' ' ' < "$OUT/notes/$name.txt" | sed 's/[[:space:]]*$//')"
  [[ $status == fail ]] && note="exit status $rc${note:+; $note}"
  record "$name" "$status" "$secs" "$limit" "$note"
  say "$name: $status (${secs}s)${note:+ - $note}"
  [[ $status == fail || $status == timeout ]] && tail -n 5 "$OUT/logs/$name.log" | sed 's/^/    | /'
  return 0
}

run_bg() { run_step "$1" & BG[$1]=$!; }
wait_bg() { if [[ -n "${BG[$1]:-}" ]]; then wait "${BG[$1]}"; unset "BG[$1]"; fi; }

say "bridgedfast GPU check$([[ $DRY == 1 ]] && echo ' (dry run: CPU, tiny sizes)'): out=$OUT work=$WORK budget=${BUDGET}s"
run_step info
run_step wheels
if [[ $DRY == 0 ]]; then
  GC_ARCH="$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)"
  if [[ -z "$GC_ARCH" ]]; then
    say "no CUDA GPU visible to torch: the GPU steps will fail (use --dry-run on a machine without one)"
    GC_ARCH="9.0"
  fi
  export GC_ARCH
  say "GPU architecture sm_${GC_ARCH/./}"
fi
# CPU-heavy work side by side: the CMake core and the benchmark model build while the extension compiles.
run_bg cmake-build
run_bg sd-model
run_step build-ext
wait_bg cmake-build
run_step ctest
run_step pytest-cuda
run_step bench-augment
run_step bench-loader
run_step bench-train
wait_bg sd-model
run_step bench-generate
run_step bench-invert
run_step bench-generate-compile
finish 0

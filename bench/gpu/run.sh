#!/usr/bin/env bash
# kerasswa on a GPU (issue 26), in one run that stops itself before 9.5 minutes:
#   1. installs the wheels of .whl/ (bench/gpu/fetch-wheels.sh: Keras and what
#      the GPU machine's image lacks for it) into /tmp/site, prints the
#      versions and nvidia-smi;
#   2. runs the numerics tests that matter on a GPU (snapshot kernels against
#      their reference, tfa parity, averaging rules, SWAG's reference check,
#      save/load/resume, post-hoc EMA, mixed precision, torch.compile's fit)
#      on JAX and on PyTorch, each test with the jit_compile settings it
#      parametrizes itself, with the GPU visible (CUDA_VISIBLE_DEVICES, which
#      the suite's conftest.py empties by default) and a pytest plugin
#      (device_check.py) that stops the run if Keras's variables are not on
#      the GPU; with the time left at the end, failures are run again with
#      float32 matrix products (TF32 off) to tell rounding from defects;
#   3. bench/gpu/gpu_bench.py on each backend: host synchronisations per
#      eager step, one snapshot against a device-to-device copy of the same
#      bytes and against SGD's update (16.8M and 268M parameters), a training
#      step with SWA every 1, 10 and 100 steps against bare SGD and Keras's EMA;
#   4. writes to $OUT (else bench/gpu/out/): gpu-bench.json, gpu-bench.md,
#      pytest-jax.txt, pytest-torch.txt, run.log.
#
# On the GPU machine (device tool, carry [".whl"]):   bash bench/gpu/run.sh
# Dry run on the CPU, tiny sizes:   PYTHON=.venv/bin/python bash bench/gpu/run.sh --cpu
# Without a GPU and without --cpu it says so and exits 0.
#
# Environment: PYTHON (default python3), OUT, GPU_BENCH_DEADLINE (seconds,
# default 570), GPU_BENCH_TESTS (test files, instead of the list in this script).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
root=$PWD

mode=gpu
case "${1:-}" in
  "") ;;
  --cpu) mode=cpu ;;
  -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown argument '$1': expected none, or --cpu for a dry run on the CPU" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
DEADLINE=${GPU_BENCH_DEADLINE:-570}
RESERVE=30 # for the report at the end: a stage stops this long before the deadline
KILL_AFTER=10 # a stage that ignores SIGINT is killed this long after it

if [ "$mode" = gpu ] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  echo "run.sh: no NVIDIA GPU on this machine (nvidia-smi is missing or lists none): nothing to measure, nothing written."
  echo "run.sh: 'PYTHON=.venv/bin/python bash bench/gpu/run.sh --cpu' runs the same pipeline on the CPU, as a dry run."
  exit 0
fi

out=${OUT:-$root/bench/gpu/out}
mkdir -p "$out" || exit 1
rm -f "$out"/gpu-bench.json "$out"/gpu-bench.md "$out"/pytest-*.txt "$out"/bench-*.json "$out"/run.log
work=$(mktemp -d "${TMPDIR:-/tmp}/kerasswa-gpu.XXXXXX") || exit 1
exec > >(tee -a "$out/run.log") 2>&1
tee_pid=$!
# At the end: run.log whole before the command returns (the device machine
# ends what a command leaves running), and no temporary folder left.
trap 'exec >&- 2>&-; wait "$tee_pid"; rm -rf "$work"' EXIT

# COLUMNS: pytest cuts its summary lines to the terminal width.
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2 COLUMNS=160
if [ "$mode" = gpu ]; then
  # conftest.py and bench/common.py only default it to "" (no GPU).
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} KERASSWA_EXPECT_DEVICE=gpu
else
  export CUDA_VISIBLE_DEVICES= KERASSWA_EXPECT_DEVICE=cpu
fi

echo "=== kerasswa GPU run, mode $mode, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$mode" = gpu ] && compgen -G ".whl/*.whl" >/dev/null; then
  # The device README's line: the carried wheels, without their dependencies (the image has them).
  echo "=== installing $(ls .whl/*.whl | wc -l) wheels of .whl/ into /tmp/site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "run.sh: the wheels of .whl/ did not install"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$root/python:$root/bench:$root/bench/gpu${PYTHONPATH:+:$PYTHONPATH}

# stage NAME LIMIT LOG COMMAND...: runs COMMAND for at most LIMIT seconds and
# never past the deadline less the reserve (SIGINT, which pytest and
# gpu_bench.py answer by writing what they have, then SIGKILL); LOG "-" is
# run.log, else a file appended to. Records "name, exit, seconds, limit".
# Returns the command's exit status, or 125 when too little time is left.
status=0
stage() {
  local name=$1 limit=$2 log=$3 left rc start
  shift 3
  left=$((DEADLINE - RESERVE - KILL_AFTER - SECONDS))
  ((limit > left)) && limit=$left
  if ((limit < 10)); then
    echo "=== $name: skipped, $((DEADLINE - SECONDS)) s left"
    [ "$log" = - ] || echo "=== $name: skipped, $((DEADLINE - SECONDS)) s left" >>"$log"
    printf '%s\tskipped\t0\t0\n' "$name" >>"$work/stages.txt"
    status=1
    return 125
  fi
  echo "=== $name (at most $limit s)"
  start=$SECONDS
  if [ "$log" = - ]; then
    timeout -s INT -k "$KILL_AFTER" "$limit" "$@"
  else
    timeout -s INT -k "$KILL_AFTER" "$limit" "$@" >>"$log" 2>&1
  fi
  rc=$?
  ((rc == 124 || rc == 137)) && echo "=== $name: stopped at its limit"
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >>"$work/stages.txt"
  ((rc != 0)) && status=1
  return "$rc"
}

# KERAS_BACKEND: Keras's default, TensorFlow, is not on the GPU machine.
stage versions 60 - env KERAS_BACKEND=jax "$PYTHON" -c '
import importlib.metadata as metadata, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("keras", "namex", "optree", "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "torch",
             "numpy", "ml-dtypes", "h5py", "rich", "absl-py", "pytest", "pytest-timeout", "hypothesis", "scikit-learn"):
    try:
        print(f"  {name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
import keras  # from /tmp/site on the GPU machine: fails here if the wheels are incomplete
print("keras imported from", keras.__file__)
' || { [ "$mode" = gpu ] && echo "run.sh: Keras does not import: see above" && exit 1; }
[ "$mode" = gpu ] && stage nvidia-smi 30 - nvidia-smi

# The numerics tests that matter on a GPU, most telling first (a stage stopped
# at its limit keeps the results of those that ran). test_training.py holds
# the torch.compile runs (conftest.py's JIT_MODES leaves PyTorch eager elsewhere).
if [ -n "${GPU_BENCH_TESTS:-}" ]; then
  read -r -a tests <<<"$GPU_BENCH_TESTS"
else
  tests=()
  for name in kernels tfa_parity averaging_rule averaging_rules averaging_modes swag_reference persistence \
    mixed_precision posthoc_ema training checkpoint resume; do
    [ -f "tests/python/test_$name.py" ] && tests+=("tests/python/test_$name.py")
  done
fi
pytest_options=(-v -p device_check --durations=10)
# pytest-timeout is on the GPU machine's image: no test may take a stage with it.
"$PYTHON" -c 'import pytest_timeout' 2>/dev/null && pytest_options+=(--timeout=90)

failed=()
for backend in jax torch; do
  log=$out/pytest-$backend.txt
  # Without preallocation JAX takes the GPU's memory as it needs it: the tests'
  # subprocesses (test_resume.py, test_posthoc_ema.py) need their share.
  stage "tests-$backend" 140 "$log" env KERAS_BACKEND=$backend XLA_PYTHON_CLIENT_PREALLOCATE=false \
    "$PYTHON" -m pytest "${pytest_options[@]}" -o "cache_dir=$work/pytest-cache-$backend" "${tests[@]}"
  rc=$?
  echo "pytest exit $rc" >>"$log"
  grep -E '^device: |^(FAILED|ERROR) |^=+ .* in [0-9.]+s|KeyboardInterrupt|^ERROR: |Exit: ' "$log" | sed "s/^/  $backend: /"
  ((rc == 1)) && failed+=("$backend")
done

for backend in jax torch; do
  # JAX compiles each variant's step under both jit_compile settings.
  limit=$([ "$backend" = jax ] && echo 120 || echo 90)
  stage "bench-$backend" "$limit" - env KERAS_BACKEND=$backend "$PYTHON" bench/gpu/gpu_bench.py bench --mode "$mode" \
    --part "$out/bench-$backend.json"
done

# Last, with the time left: the failures again without TF32 matrix products
# (JAX's default on NVIDIA GPUs, and cuDNN's in PyTorch, round products to 10
# bits of mantissa), to tell rounding from defects.
for backend in "${failed[@]}"; do
  log=$out/pytest-$backend.txt
  echo "### rerun: the failures with float32 matrix products (JAX_DEFAULT_MATMUL_PRECISION=highest, NVIDIA_TF32_OVERRIDE=0)" >>"$log"
  stage "tests-$backend-rerun" 60 "$log" env KERAS_BACKEND=$backend XLA_PYTHON_CLIENT_PREALLOCATE=false \
    JAX_DEFAULT_MATMUL_PRECISION=highest NVIDIA_TF32_OVERRIDE=0 \
    "$PYTHON" -m pytest "${pytest_options[@]}" -o "cache_dir=$work/pytest-cache-$backend" --lf --lfnf=none "${tests[@]}"
  echo "pytest exit $?" >>"$log"
  sed -n '/^### rerun: /,$p' "$log" | grep -E '^(FAILED|ERROR) |^=+ .* in [0-9.]+s' | sed "s/^/  $backend rerun: /"
done

echo "=== report ($((DEADLINE - SECONDS)) s left)"
timeout -k 5 15 "$PYTHON" bench/gpu/gpu_bench.py report --out "$out" --stages "$work/stages.txt" --mode "$mode" \
  || { echo "run.sh: the report failed"; status=1; }
echo "=== done after $SECONDS s, exit $status; files in $out:"
ls -l "$out"
exit "$status"

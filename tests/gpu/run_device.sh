#!/usr/bin/env bash
# On the GPU machine, from the repository root:
#
#     bash tests/gpu/run_device.sh [--quick] [--no-tests] [--no-bench] "$OUT"
#     bash tests/gpu/run_device.sh --dry-run /tmp/out      # anywhere: checks and prints, exits 0
#
# Installs the prebuilt abi3 wheel of rankcore into the machine's python3 (no network:
# pip --no-index --no-deps), runs the device tests (tests/gpu/) against the *installed*
# package, then benches/bench_gpu.py, and leaves in OUT_DIR:
#
#     env.txt        date, nvidia-smi, versions (python, numpy, scipy, sklearn, cupy, torch, CUDA)
#     install.log    pip's output, missing dependencies, where rankcore is imported from
#     pytest.log     the device tests (junit.xml beside it)
#     bench.log      the bench's output (its table is also printed at the end of this script)
#     bench_gpu.json the bench's results (rewritten after every case)
#     status.txt     one line per step: name, exit code, seconds
#
# (7 files: the device tool brings back at most 8.) No step stops the script; it always exits
# 0, and it keeps to a time budget (RANKCORE_DEVICE_BUDGET_S, default 520 s < 9 minutes):
# pytest gets at most 300 s, the bench what is left (at most 360 s; --quick when under 150 s).
#
# The wheel: $RANKCORE_WHEEL, else the newest of target/wheels/rankcore-*.whl,
# dist/rankcore-*.whl, .whl/rankcore-*.whl (ignored paths: name the folder in the device
# tool's `carry`). The interpreter: $PYTHON, else python3.

set -u

usage() { echo "usage: bash tests/gpu/run_device.sh [--dry-run] [--quick] [--no-tests] [--no-bench] OUT_DIR" >&2; }

DRY=0; QUICK=0; TESTS=1; BENCH=1; OUT=""
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --no-tests) TESTS=0 ;;
    --no-bench) BENCH=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option: $a" >&2; usage; exit 0 ;;
    *) OUT="$a" ;;
  esac
done
if [ -z "$OUT" ]; then usage; exit 0; fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$OUT" || { echo "cannot create $OUT" >&2; exit 0; }
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)
BUDGET="${RANKCORE_DEVICE_BUDGET_S:-520}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORK="$(mktemp -d /tmp/rankcore-device.XXXXXX)"   # pytest and the bench run from here, not from the repo
SITE="$WORK/site"                                  # the wheel is installed here (PYTHONPATH)
mkdir -p "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ "$DRY" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"
else PY="python3"; fi

STATUS="$OUT/status.txt"
: > "$STATUS"
echo "# run_device.sh $(date -u +%FT%TZ) dry_run=$DRY quick=$QUICK budget=${BUDGET}s python=$PY" >> "$STATUS"

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }

# step NAME CMD...: run, record "NAME rc=N s=T" in status.txt, never fail.
step() {
  local name="$1"; shift
  local t0; t0=$(date +%s)
  echo "=== $name ($(elapsed) s elapsed)"
  "$@"
  local rc=$?
  printf '%-10s rc=%-4s %4ss\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$STATUS"
  return 0
}
skip() { printf '%-10s rc=%-4s %s\n' "$1" "-" "skipped: $2" >> "$STATUS"; echo "=== $1: skipped ($2)"; }

# ---------------------------------------------------------------------------------------
# the wheel
# ---------------------------------------------------------------------------------------
find_wheel() {
  if [ -n "${RANKCORE_WHEEL:-}" ]; then echo "$RANKCORE_WHEEL"; return; fi
  local w
  w=$(cd "$REPO" && ls -t target/wheels/rankcore-*.whl dist/rankcore-*.whl .whl/rankcore-*.whl 2>/dev/null | head -n 1)
  [ -n "$w" ] && echo "$REPO/$w"
}
WHEEL="$(find_wheel)"

# ---------------------------------------------------------------------------------------
# dry run: check, print, smoke-test the bench's no-GPU path
# ---------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  echo "dry run (repo $REPO, python $PY, out $OUT)"
  if [ -n "$WHEEL" ] && [ -f "$WHEEL" ]; then
    echo "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
    case "$(basename "$WHEEL")" in
      *abi3*x86_64*) ;;
      *) echo "warning: $(basename "$WHEEL") is not an abi3 x86_64 wheel; the device is x86-64 with Python 3.12" ;;
    esac
    printf '%-10s rc=%-4s %s\n' wheel 0 "$WHEEL" >> "$STATUS"
  else
    echo "wheel: MISSING (set RANKCORE_WHEEL or build target/wheels/rankcore-*.whl with maturin build --release)"
    printf '%-10s rc=%-4s %s\n' wheel 1 "missing" >> "$STATUS"
  fi
  echo "would run:"
  echo "  python3 -m pip install --no-deps --no-index --force-reinstall ${WHEEL:-<wheel>}  > $OUT/install.log"
  echo "  (cd $WORK && timeout 300 python3 -m pytest -q -ra -p no:cacheprovider --continue-on-collection-errors --junitxml=$OUT/junit.xml $REPO/tests/gpu)  > $OUT/pytest.log"
  echo "  (cd $WORK && timeout 360 python3 $REPO/benches/bench_gpu.py --out $OUT/bench_gpu.json --time-budget <left>)  > $OUT/bench.log"
  step syntax bash -n "$REPO/tests/gpu/run_device.sh"
  step compile "$PY" -m py_compile "$REPO/benches/bench_gpu.py" "$REPO/tests/gpu/conftest.py"
  step bench timeout 120 "$PY" "$REPO/benches/bench_gpu.py" --dry-run --out "$OUT/bench_gpu.json"
  echo; cat "$STATUS"
  rm -rf "$WORK"
  exit 0
fi

# ---------------------------------------------------------------------------------------
# 1. environment
# ---------------------------------------------------------------------------------------
env_report() {
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -a)"
  echo "repo: $REPO  commit: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo n/a)"
  echo "python: $(command -v "$PY") PYTHONPATH=${PYTHONPATH:-}"
  echo "cores: $(nproc)"; free -g 2>/dev/null | head -n 2
  echo "--- nvidia-smi"
  nvidia-smi 2>&1 || echo "nvidia-smi failed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1
  echo "--- versions"
  timeout 120 "$PY" - <<'EOF'
import importlib, platform, sys
print("python", sys.version.replace("\n", " "), platform.machine())
for name in ("numpy", "scipy", "sklearn", "cupy", "torch", "pytest", "threadpoolctl", "psutil"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"{name} MISSING ({type(e).__name__}: {e})")
try:
    import cupy as cp
    rt = cp.cuda.runtime
    print("cuda runtime", rt.runtimeGetVersion(), "driver", rt.driverGetVersion(), "devices", rt.getDeviceCount())
    p = rt.getDeviceProperties(0)
    print("device", p["name"].decode() if isinstance(p["name"], bytes) else p["name"],
          f"sm_{p['major']}{p['minor']}", p["multiProcessorCount"], "SMs",
          f"{p['totalGlobalMem'] / 2**30:.1f} GiB")
except Exception as e:
    print("cupy device query failed:", type(e).__name__, e)
try:
    import torch
    print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:
    print("torch query failed:", type(e).__name__, e)
EOF
}
step env env_report > "$OUT/env.txt" 2>&1

# ---------------------------------------------------------------------------------------
# 2. install the wheel (no network) and check what gets imported
# ---------------------------------------------------------------------------------------
install_wheel() {
  if [ -z "$WHEEL" ] || [ ! -f "$WHEEL" ]; then
    echo "wheel MISSING: set RANKCORE_WHEEL or carry target/wheels (or dist/) with the device tool"
    return 1
  fi
  echo "wheel: $WHEEL"
  # Into a folder of its own (PYTHONPATH): no PEP 668 "externally managed" refusal, nothing
  # left in the machine's Python. If pip refuses the wheel's platform tag, unzip it instead.
  "$PY" -m pip install --no-deps --no-index --target "$SITE" "$WHEEL"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "pip refused the wheel (rc=$rc): unpacking it into $SITE instead"
    "$PY" -m zipfile -e "$WHEEL" "$SITE"
    rc=$?
  fi
  echo "--- dependencies (not installed by --no-deps; they must already be here)"
  "$PY" - <<'EOF'
import importlib
missing = []
for name in ("numpy", "scipy", "sklearn"):
    try:
        importlib.import_module(name)
    except Exception as e:
        missing.append(f"{name} ({type(e).__name__}: {e})")
print("missing: " + ", ".join(missing) if missing else "numpy, scipy, scikit-learn: present")
EOF
  echo "--- import check (from $WORK, not the repo)"
  (cd "$WORK" && "$PY" - "$REPO" <<'EOF'
import os, sys
repo = os.path.realpath(sys.argv[1])
import rankcore
from rankcore import _core
f = os.path.realpath(rankcore.__file__)
print("rankcore", rankcore.__version__, "from", f)
print("_core from", os.path.realpath(_core.__file__))
cuda = os.path.join(os.path.dirname(f), "cuda")
srcs = sorted(n for n in os.listdir(cuda) if n.endswith((".cu", ".cuh", ".names"))) if os.path.isdir(cuda) else []
print("kernel sources in the installed package:", ", ".join(srcs) or "NONE (rankcore/cuda missing from the wheel)")
if f.startswith(repo + os.sep):
    print("WARNING: rankcore is imported from the source tree, not the installed wheel")
    sys.exit(3)
EOF
  )
  local rc2=$?
  [ $rc -ne 0 ] && return $rc
  return $rc2
}
step install install_wheel > "$OUT/install.log" 2>&1

# ---------------------------------------------------------------------------------------
# 3. device tests, against the installed package
# ---------------------------------------------------------------------------------------
if [ "$TESTS" = 1 ]; then
  T=$(( $(left) - 150 )); P_MAX="${RANKCORE_PYTEST_MAX_S:-300}"; [ $T -gt $P_MAX ] && T=$P_MAX
  if [ $T -lt 30 ]; then
    skip pytest "time budget"
  else
    EXTRA=()
    "$PY" -c "import pytest_timeout" >/dev/null 2>&1 && EXTRA+=(--timeout=120)
    run_pytest() {
      (cd "$WORK" && timeout -k 10 "$T" "$PY" -m pytest -q -ra -p no:cacheprovider --durations=15 --continue-on-collection-errors \
        --junitxml="$OUT/junit.xml" ${EXTRA[@]+"${EXTRA[@]}"} "$REPO/tests/gpu")
    }
    echo "pytest: timeout ${T}s ${EXTRA[*]:-}" > "$OUT/pytest.log"
    step pytest run_pytest >> "$OUT/pytest.log" 2>&1
  fi
else
  skip pytest "--no-tests"
fi

# ---------------------------------------------------------------------------------------
# 4. the GPU bench
# ---------------------------------------------------------------------------------------
if [ "$BENCH" = 1 ]; then
  T=$(( $(left) - 10 )); [ $T -gt 360 ] && T=360
  if [ $T -lt 40 ]; then
    skip bench "time budget"
  else
    BARGS=(--out "$OUT/bench_gpu.json" --time-budget $(( T - 25 )))
    if [ "$QUICK" = 1 ] || [ $T -lt 150 ]; then BARGS+=(--quick); fi
    run_bench() { (cd "$WORK" && timeout -k 10 "$T" "$PY" "$REPO/benches/bench_gpu.py" "${BARGS[@]}"); }
    echo "bench: timeout ${T}s, args ${BARGS[*]}" > "$OUT/bench.log"
    step bench run_bench >> "$OUT/bench.log" 2>&1
  fi
else
  skip bench "--no-bench"
fi

# torch tests: none yet.

{
  echo "--- nvidia-smi after the run"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv 2>&1
} >> "$OUT/env.txt" 2>&1
echo "total      $(elapsed)s" >> "$STATUS"
rm -rf "$WORK"

# ---------------------------------------------------------------------------------------
# summary (the device tool returns the end of stdout)
# ---------------------------------------------------------------------------------------
echo
echo "===== env"; grep -E '^(device|cuda runtime|cupy|torch|numpy|scipy|sklearn|python) ' "$OUT/env.txt" 2>/dev/null
echo "===== install"; tail -n 6 "$OUT/install.log" 2>/dev/null
echo "===== pytest"; grep -E '^(FAILED|ERROR)|[0-9]+ (passed|failed|skipped|errors?|deselected)' "$OUT/pytest.log" 2>/dev/null | tail -n 40
echo "===== bench"; sed -n '/^### GPU benchmarks/,$p' "$OUT/bench.log" 2>/dev/null | head -n 80
echo "===== status"; cat "$STATUS"
exit 0

#!/usr/bin/env bash
# gpu_check.sh — the one prepared check for a GPU machine (PyTorch 2.x with CUDA, CMake,
# no Go, no internet). Run from the repository root, with the Go binaries built beforehand
# on a CPU machine:
#   make gpu-prep                 # on the CPU machine: bin/spectraclip and bin/*.test
#   bash scripts/gpu_check.sh     # on the GPU machine; report in $OUT/gpu-report.md
# Steps (a failing step does not stop the steps that do not depend on it). The core, run by
# default (STEPS="1 2 3 4 5 6 7"), is sized for about 6 minutes on 16 cores:
#   1 preflight   python/torch (values read by key, import warnings aside), nvcc vs
#                 torch.version.cuda (informational), glibc vs the Go binaries, g++, cmake >= 3.18
#   2 build       csrc/ against this machine's LibTorch; ldd shows which libtorch_cuda,
#                 libcudart, libcublas the shim resolves (symlinks resolved), refusing ones
#                 outside the wheel
#   3 version     spectraclip version names this LibTorch and >= 1 CUDA device
#   4 tests       the whole torch test binary (CUDA tests included), the detector tests
#   5 train       1 epoch (TRAIN_EPOCHS) of drcnn and concrete on CUDA (on the CPU without
#                 one); torch.load (its defaults: weights_only) reads the checkpoints;
#                 TensorBoard reads the events
#   6 bench       fp16, batch 8: built-in and full-size random-weights AdaCLIP (ViT-L/14@336
#                 at 518), Go against the Python peer
#   7 dist        data-parallel training over NCCL (train --nproc-per-node, one process per
#                 GPU: a world of 1 on a one-GPU machine), 1 epoch of drcnn
# Optional steps (STEPS="8 9 10 11", or --all for every step):
#   8 serve       serve + loadtest on the step-5 DRCNN run (1, 4, 16 clients; 16 over gRPC and
#                 shared memory)
#   9 bench-full  step 6 at fp32 and fp16, batch 1 and 8
#  10 cpu         drcnn and concrete on the CPU as well, and Gloo data-parallel training (2
#                 processes on the CPU; reported as skipped on a build without Gloo)
#  11 aoti        compiled detectors (AOTInductor .pt2, built here by this machine's torch):
#                 the built-in detector and the full-size random-weights AdaCLIP at fp16,
#                 batch 8 on CUDA (on the CPU without one: the built-in at fp32, batch 4), Go
#                 with the package (bench --compiled) against Go with TorchScript, the Python
#                 peer eager and under torch.compile; about 5-8 minutes on a GPU (AdaCLIP's
#                 compile), so run it as its own group: STEPS="11"
# Each command should run one step group within 10 minutes, e.g. STEPS="1 2 3 4" then
# STEPS="5 6 7"; the build folder carries over, the preflight runs every time, and each
# group writes its own report (gpu-report.md for the default core, gpu-report-s<steps>.md
# otherwise).
# Without a CUDA device (or with --cpu-only) the CUDA parts are reported as skipped, so
# the preflight, the build and the CPU parts can be shown on any machine; CI runs
#   make gpu-prep TORCH=pip && PYTHON=.venv/bin/python GPU_BUILD=build-pip \
#     bash scripts/gpu_check.sh --cpu-only --all
# against the project's PyPI torch 2.11 (CUDA-linked), so the GPU run is not its first on 2.x.
# Environment: OUT (report folder, default gpu_out: the report, plus the log of a failed
# step), SCRATCH (data, runs, exports and logs; default a fresh folder in $TMPDIR, removed
# at the end unless KEEP_SCRATCH is set), PYTHON (default python3), GPU_BUILD (the build
# folder the shim is rebuilt in, default build), STEPS (e.g. "1 2 3").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT=$OUT/gpu-report.md
# scratch (data, runs, exports, logs) lives outside $OUT: what comes back is the report
# and, for a failed step, its log
SCRATCH=${SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$SCRATCH"
# keeplog copies a failed step's log into $OUT, at most 7 of them beside the reports (what
# comes back from the GPU machine is at most 8 files); the rest are named in the report
keeplog() {
  [ -f "$1" ] || return 0
  if [ "$(find "$OUT" -maxdepth 1 -type f | wc -l)" -ge 8 ]; then
    say "    (log $(basename "$1") not kept: $OUT holds 8 files already)"
    return 0
  fi
  cp "$1" "$OUT/" 2>/dev/null
}
PY=${PYTHON:-python3}
BUILD=${GPU_BUILD:-build}
STEPS=${STEPS:-1 2 3 4 5 6 7}
CPU_ONLY=0
for a in "$@"; do
  case "$a" in
    --cpu-only) CPU_ONLY=1 ;;
    --all) STEPS="1 2 3 4 5 6 7 8 9 10 11" ;;
    *) echo "gpu_check: unknown argument $a (want --cpu-only, --all)" >&2; exit 2 ;;
  esac
done
[ "$STEPS" = "1 2 3 4 5 6 7" ] || REPORT=$OUT/gpu-report-s$(echo "$STEPS" | tr -s ' ' '-').md
TRAIN_EPOCHS=${TRAIN_EPOCHS:-1}
: >"$REPORT"

say() { echo "$*" | tee -a "$REPORT"; }
declare -A RESULT
# result STEP ok|FAIL|skipped "why": one line per outcome, collected for the summary.
result() {
  RESULT[$1]="${RESULT[$1]:-}$2${3:+: $3}; "
  say "- [$1] $2${3:+: $3}"
}
want() { [[ " $STEPS " == *" $1 "* ]]; }

say "# GPU check $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
say ""

# --- 1 preflight ------------------------------------------------------------------------
TORCH_VER="" TORCH_CUDA="" HAVE_CUDA=0 TORCH_CMAKE="" TORCH_LIB="" SITE=""
# the preflight runs for every step group: later steps need its values
if true; then
  say "## 1 preflight"
  if ! command -v "$PY" >/dev/null; then
    result preflight FAIL "no $PY on PATH (set PYTHON)"
  elif ! info=$("$PY" - 2>"$SCRATCH/preflight.err" <<'PYEOF'
import os, torch
print("TORCH_VER=" + torch.__version__)
print("TORCH_CUDA=" + (torch.version.cuda or ""))
print("HAVE_CUDA=" + ("1" if torch.cuda.is_available() else "0"))
print("TORCH_CMAKE=" + torch.utils.cmake_prefix_path)
print("TORCH_LIB=" + os.path.join(os.path.dirname(torch.__file__), "lib"))
print("SITE=" + os.path.dirname(os.path.dirname(torch.__file__)))
print("DEVICE=" + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"))
PYEOF
  ); then
    result preflight FAIL "$PY cannot import torch: $(tail -1 "$SCRATCH/preflight.err")"
  else
    # values by key: warnings that an import prints go to stderr, never into a value
    val() { echo "$info" | sed -n "s/^$1=//p" | tail -1; }
    TORCH_VER=$(val TORCH_VER) TORCH_CUDA=$(val TORCH_CUDA) HAVE_CUDA=$(val HAVE_CUDA)
    TORCH_CMAKE=$(val TORCH_CMAKE) TORCH_LIB=$(val TORCH_LIB) SITE=$(val SITE)
    [ $CPU_ONLY = 1 ] && HAVE_CUDA=0
    result preflight ok "$PY: torch $TORCH_VER, CUDA ${TORCH_CUDA:-none}, device: $(val DEVICE)"
    [ -s "$SCRATCH/preflight.err" ] && say "    (import printed: $(head -c 300 "$SCRATCH/preflight.err" | tr '\n' ' '))"
  fi
  cv=$(cmake --version 2>/dev/null | head -1 | awk '{print $3}')
  if [ -z "$cv" ]; then
    result preflight FAIL "no cmake"
  elif [ "$(printf '%s\n%s\n' 3.18 "$cv" | sort -V | head -1)" != 3.18 ]; then
    result preflight FAIL "cmake $cv is older than 3.18 (CMakeLists.txt's minimum)"
  else
    result preflight ok "cmake $cv"
  fi
  # nvcc is informational: the shim compiles no CUDA code and takes the CUDA headers and
  # libraries from the wheels (third_party/torch_wheel.cmake)
  if [ -n "$TORCH_CUDA" ]; then
    if ! command -v nvcc >/dev/null; then
      result preflight skipped "nvcc not on PATH (not needed: the CUDA headers come from the wheels)"
    else
      nv=$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
      if [ "${nv%%.*}" != "${TORCH_CUDA%%.*}" ]; then
        result preflight skipped "nvcc is CUDA $nv, torch was built for CUDA $TORCH_CUDA (not used by the build)"
      else
        result preflight ok "nvcc CUDA $nv, torch CUDA $TORCH_CUDA"
      fi
    fi
  else
    result preflight skipped "nvcc check: torch has no CUDA build"
  fi
  have=$(ldd --version 2>/dev/null | head -1 | grep -o '[0-9]*\.[0-9]*$')
  need=""
  for b in bin/spectraclip bin/torch.test bin/detect.test; do
    [ -f "$b" ] || { result preflight FAIL "missing $b (run make gpu-prep on the CPU machine)"; continue; }
    n=$(grep -aoE 'GLIBC_2\.[0-9]+' "$b" | sort -uV | tail -1 | sed 's/GLIBC_//')
    need=$(printf '%s\n%s\n' "$need" "$n" | sort -V | tail -1)
  done
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    result preflight FAIL "glibc $have here, the Go binaries need $need"
  else
    result preflight ok "glibc $have (Go binaries need ${need:-?})"
  fi
  if ! command -v g++ >/dev/null; then
    result preflight FAIL "no g++"
  else
    gv=$(g++ -dumpfullversion 2>/dev/null || g++ -dumpversion)
    gneed=9 why="C++17"
    tv=${TORCH_VER%%+*}
    if [ -n "$tv" ] && [ "$(printf '%s\n%s\n' "2.14" "$tv" | sort -V | head -1)" = "2.14" ]; then
      gneed=11 why="C++20, which LibTorch >= 2.14 requires"
    fi
    if [ "${gv%%.*}" -lt $gneed ]; then
      result preflight FAIL "g++ $gv is older than $gneed (csrc/ builds as $why)"
    else
      result preflight ok "g++ $gv"
    fi
  fi
fi

# --- 2 build ----------------------------------------------------------------------------
BUILT=0
if want 2 && [ -n "$TORCH_CMAKE" ]; then
  say "## 2 build"
  rm -rf "$BUILD"
  if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTORCH_DIR="$TORCH_CMAKE/Torch" >"$SCRATCH/cmake.log" 2>&1; then
    result build FAIL "cmake configure failed: $(grep -m1 -i error "$SCRATCH/cmake.log")"; keeplog "$SCRATCH/cmake.log"
    tail -20 "$SCRATCH/cmake.log" >>"$REPORT"
  elif ! cmake --build "$BUILD" -j "$(nproc)" >>"$SCRATCH/cmake.log" 2>&1; then
    result build FAIL "csrc build failed: $(grep -m1 'error' "$SCRATCH/cmake.log")"; keeplog "$SCRATCH/cmake.log"
    grep -m20 -A3 'error' "$SCRATCH/cmake.log" >>"$REPORT"
  else
    BUILT=1
    result build ok "$(grep -E 'C\+\+ standard|building with CUDA|Gloo|NCCL|gloo' "$SCRATCH/cmake.log" | sed 's/^-- //' | tr '\n' ' ')"
    lib="$BUILD/libspectraclip_c.so"
    deps=$(LD_LIBRARY_PATH="$TORCH_LIB" ldd "$lib")
    echo "$deps" | grep -E 'libtorch|libc10|cudart|cublas' | sed 's/^\s*/    /' | tee -a "$REPORT"
    if echo "$deps" | grep -q 'not found'; then
      result build FAIL "unresolved: $(echo "$deps" | grep 'not found' | awk '{print $1}' | tr '\n' ' ')"
    fi
    for l in libtorch_cuda libcudart libcublas libc10_cuda; do
      p=$(echo "$deps" | awk -v l="$l" '$1 ~ "^"l {print $3}' | head -1)
      [ -z "$p" ] && continue
      case "$(readlink -f "$p")" in
        "$(readlink -f "$SITE")"/*) result build ok "$l -> $(readlink -f "$p") (the wheel's own)" ;;
        *) result build FAIL "$l resolves to $p, outside the PyTorch install $SITE (a second CUDA would be mixed in)" ;;
      esac
    done
  fi
fi
# the tests that run Python (saved tensors read by torch.load, TorchScript from Python) use
# this machine's torch, not /usr/bin/python3
export PYTHON="$(command -v "$PY" || echo "$PY")"
export LD_LIBRARY_PATH="$ROOT/$BUILD:${TORCH_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- 3 version --------------------------------------------------------------------------
if want 3; then
  say "## 3 version"
  if v=$(./bin/spectraclip version 2>&1); then
    echo "$v" | sed 's/^/    /' | tee -a "$REPORT"
    lt=$(echo "$v" | awk '/^libtorch/ {print $2}')
    if [ -z "$lt" ] || [ "$lt" != "${TORCH_VER%%+*}" ]; then
      result version FAIL "spectraclip runs LibTorch ${lt:-?}, the machine's torch is $TORCH_VER"
    else
      result version ok "LibTorch $lt"
    fi
    if [ $HAVE_CUDA = 1 ]; then
      echo "$v" | grep -q 'cuda:0' && result version ok "CUDA device listed" || result version FAIL "no CUDA device listed"
    fi
  else
    result version FAIL "spectraclip version failed: $(echo "$v" | tail -1)"
  fi
fi

# --- 4 tests ----------------------------------------------------------------------------
# runtests NAME BINARY PKGDIR [ARGS]: a test binary runs in its package folder (testdata).
runtests() {
  local name=$1 bin=$ROOT/$2 dir=$3; shift 3
  [ -x "$bin" ] || { result tests FAIL "missing $2 (make gpu-prep)"; return; }
  local log=$SCRATCH/$name.log
  (cd "$dir" && timeout 300 "$bin" -test.v -test.count=1 "$@") >"$log" 2>&1
  local rc=$? p f s
  p=$(grep -c -- '--- PASS' "$log") f=$(grep -c -- '--- FAIL' "$log") s=$(grep -c -- '--- SKIP' "$log")
  if [ $rc = 0 ]; then
    result tests ok "$name: $p passed, $f failed, $s skipped"
  else
    keeplog "$log"
    result tests FAIL "$name exit $rc: $p passed, $f failed, $s skipped; $(grep -- '--- FAIL' "$log" | head -5 | awk '{print $3}' | tr '\n' ' ')"
    grep -B2 -A8 -- '--- FAIL' "$log" | head -60 >>"$REPORT"
  fi
  grep -E -A1 -- '--- SKIP.*(CUDA|Cuda|GPU)' "$log" | head -6 >>"$REPORT"
}
if want 4; then
  say "## 4 tests"
  runtests torch_test bin/torch.test torch
  runtests detect_test bin/detect.test nodes/detect
fi

# --- 5 train ----------------------------------------------------------------------------
train() {
  local variant=$1 dev=$2 dir=$SCRATCH/run_${1}_$2
  rm -rf "$dir"
  if timeout 300 ./bin/spectraclip --log-level warn train --variant "$variant" --out "$dir" \
      training.device="$dev" training.trainer.max_epochs="$TRAIN_EPOCHS" data.root="$SCRATCH/data" data.generate_if_missing=true >"$SCRATCH/train_${variant}_$dev.log" 2>&1; then
    result train ok "$variant on $dev: $(grep -m1 '^test:' "$SCRATCH/train_${variant}_$dev.log")"
    # tensor files are pickled dicts that torch.load reads with its defaults (weights_only
    # on PyTorch >= 2.6); the optimizer state is LibTorch's own archive (torch.jit.load)
    ck=$dir/checkpoints/last/optim.pt
    if [ -f "$ck" ] && msg=$("$PY" -c 'import sys, torch; m = torch.jit.load(sys.argv[1]); print(len(list(m.named_modules())), "modules")' "$ck" 2>&1); then
      result train ok "torch.jit.load reads ${ck#$dir/} (LibTorch's optimizer archive): $msg"
    else
      result train FAIL "torch.jit.load cannot read ${ck#$dir/}: $(echo "${msg:-missing}" | tail -1)"
    fi
    for ck in "$dir/pipeline.weights.pt" "$dir/checkpoints/last/weights.pt"; do
      [ -f "$ck" ] || { result train FAIL "$variant on $dev: no ${ck#$dir/}"; continue; }
      if msg=$("$PY" -c 'import sys, torch; d = torch.load(sys.argv[1]); print(len(d), "entries")' "$ck" 2>&1); then
        result train ok "torch.load (its defaults) reads ${ck#$dir/}: $msg"
      else
        result train FAIL "torch.load (its defaults) refuses ${ck#$dir/}: $(echo "$msg" | tail -1)"
      fi
    done
  else
    result train FAIL "$variant on $dev: $(tail -1 "$SCRATCH/train_${variant}_$dev.log")"; keeplog "$SCRATCH/train_${variant}_$dev.log"
  fi
}
MAINDEV=cpu
[ $HAVE_CUDA = 1 ] && MAINDEV=cuda
if want 5; then
  say "## 5 train"
  for v in drcnn concrete; do
    [ $HAVE_CUDA = 1 ] || result train skipped "$v on cuda: no CUDA device (trained on the CPU instead)"
    train $v $MAINDEV
  done
  tb=$SCRATCH/run_drcnn_cuda/tb
  [ -d "$tb" ] || tb=$SCRATCH/run_drcnn_cpu/tb
  if "$PY" -c 'import tensorboard' 2>/dev/null && [ -d "$tb" ]; then
    if msg=$("$PY" - "$tb" 2>&1 <<'PYEOF'
import glob, sys
from tensorboard.backend.event_processing import event_accumulator as ea
f = glob.glob(sys.argv[1] + "/*tfevents*")[0]
acc = ea.EventAccumulator(f, size_guidance={ea.IMAGES: 0, ea.SCALARS: 0})
acc.Reload()
t = acc.Tags()
print(f"TensorBoard {__import__('tensorboard').__version__}: {len(t['scalars'])} scalar tags, {len(t['images'])} image tags")
PYEOF
    ); then result train ok "$msg"; else result train FAIL "TensorBoard cannot read the events: $(echo "$msg" | tail -1)"; fi
  else
    result train skipped "TensorBoard check: no tensorboard for $PY or no event folder"
  fi
fi

# --- 8 serve (optional) -----------------------------------------------------------------
if want 8; then
  say "## 8 serve"
  [ -f "$SCRATCH/run_drcnn_$MAINDEV/pipeline.yaml" ] || train drcnn $MAINDEV
  # the inference service on the trained DRCNN run: throughput and latency per client count
  srv=$SCRATCH/run_drcnn_$MAINDEV
  if [ -f "$srv/pipeline.yaml" ]; then
    dev=cpu; [ "$srv" = "$SCRATCH/run_drcnn_cuda" ] && dev=cuda
    shm=""; [ -d /dev/shm ] && [ -w /dev/shm ] && shm=/dev/shm
    ./bin/spectraclip --log-level warn serve --run "$srv" --device $dev --addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:19090 ${shm:+--shm-dir $shm} >"$SCRATCH/serve.log" 2>&1 &
    spid=$!
    for _ in $(seq 1 120); do
      "$PY" -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18080/readyz", timeout=1)' >/dev/null 2>&1 && break
      kill -0 $spid 2>/dev/null || break
      sleep 0.5
    done
    # with bench (same variant, batch and device) around every level: the served/bench ratio
    if lt=$(timeout 240 ./bin/spectraclip loadtest --server http://127.0.0.1:18080 --clients 1,4,16 --requests 48 --size 256x256 \
        --bench-variant drcnn --bench-batch 8 --bench-device $dev 2>&1); then
      result train ok "serve on $dev (drcnn, 256×256, max-batch 8):"
      echo "$lt" | sed 's/^/    /' | tee -a "$REPORT"
    else
      result train FAIL "serve/loadtest on $dev: $(echo "$lt" | tail -1)"
    fi
    # 16 clients over gRPC, and through shared memory (the client on this machine)
    for how in grpc ${shm:+shm}; do
      extra=(--server grpc://127.0.0.1:19090 --metrics http://127.0.0.1:18080/metrics)
      [ $how = shm ] && extra+=(--shm "$shm")
      if lt=$(timeout 180 ./bin/spectraclip loadtest "${extra[@]}" --clients 16 --requests 48 --size 256x256 \
          --bench-variant drcnn --bench-batch 8 --bench-device $dev 2>&1); then
        result train ok "serve on $dev over $how, 16 clients:"
        echo "$lt" | sed 's/^/    /' | tee -a "$REPORT"
      else
        result train FAIL "serve/loadtest over $how on $dev: $(echo "$lt" | tail -1)"
      fi
    done
    kill -TERM $spid 2>/dev/null
    wait $spid 2>/dev/null && result train ok "serve drained and exited 0 on SIGTERM" || result train FAIL "serve did not exit 0 on SIGTERM (see serve.log)"
  fi
fi

# --- 6 bench ----------------------------------------------------------------------------
if want 6 || want 9; then
  say "## 6 bench"
  PRECS="fp16" BATCHES="8"
  want 9 && PRECS="fp32 fp16" BATCHES="1 8"
  if [ $HAVE_CUDA != 1 ]; then
    result bench skipped "no CUDA device"
  else
    ./bin/spectraclip export-detector --builtin --out "$SCRATCH/builtin.pt" >/dev/null 2>&1
    DETS="builtin:$SCRATCH/builtin.pt"
    if timeout 240 "$PY" scripts/export_adaclip.py --random-weights --out "$SCRATCH/adaclip_random.pt" >"$SCRATCH/export.log" 2>&1; then
      DETS="$DETS adaclip:$SCRATCH/adaclip_random.pt"
      result bench ok "exported full-size AdaCLIP (random weights)"
    else
      result bench FAIL "AdaCLIP export: $(tail -1 "$SCRATCH/export.log")"
    fi
    {
      echo ""
      echo "TF32 (LibTorch's defaults): $("$PY" -c 'import torch; print("matmul", torch.backends.cuda.matmul.allow_tf32, "conv", torch.backends.cudnn.allow_tf32)')"
      echo ""
      echo "| detector | precision | batch | variant | Go FPS | Go detector FPS | around-detector share | Python FPS | Go/Python |"
      echo "|---|---|---|---|---|---|---|---|---|"
    } >>"$REPORT"
    for d in $DETS; do
      name=${d%%:*} file=${d#*:}
      for prec in $PRECS; do
        half=""; [ $prec = fp16 ] && half=--half
        for b in $BATCHES; do
          g=$SCRATCH/go_${name}_${prec}_b$b.json p=$SCRATCH/py_${name}_${prec}_b$b.json
          timeout 120 ./bin/spectraclip bench --device cuda --detector "$file" --batch $b --size 256x256 --iters 10 --warmup 3 --train-iters 0 $half --json >"$g" 2>>"$SCRATCH/bench.log" || result bench FAIL "go $name $prec b$b"
          timeout 120 "$PY" scripts/bench_reference.py --device cuda --detector "$file" --batch $b --size 256x256 --iters 10 --warmup 3 --train-iters 0 $half --json >"$p" 2>>"$SCRATCH/bench.log" || result bench FAIL "python $name $prec b$b"
          "$PY" - "$g" "$p" "$name" "$prec" "$b" >>"$REPORT" <<'PYEOF'
import json, sys
def load(p):
    try:
        return {v["variant"]: v for v in json.load(open(p))["variants"]}
    except Exception:
        return {}
go, py = load(sys.argv[1]), load(sys.argv[2])
for v in sorted(set(go) | set(py)):
    g, p = go.get(v, {}), py.get(v, {})
    st = g.get("stages", {})
    share = (sum(st.values()) - st["detector"]) / st["detector"] if st.get("detector") else float("nan")
    ratio = g.get("fps", 0) / p["fps"] if p.get("fps") else float("nan")
    print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {v} | {g.get('fps', float('nan')):.2f} | {g.get('detector_fps', float('nan')):.2f} | {share:.1%} | {p.get('fps', float('nan')):.2f} | {ratio:.2f} |")
PYEOF
        done
      done
    done
    rm -f "$SCRATCH"/*.pt
  fi
fi

# --- 7 dist -----------------------------------------------------------------------------
# dist BACKEND DEVICE N: one epoch of drcnn with N data-parallel processes; the log must
# show the backend the workers joined with and the test line of rank 0.
dist() {
  local be=$1 dev=$2 n=$3 log=$SCRATCH/dist_$1.log dir=$SCRATCH/run_dist_$1
  rm -rf "$dir"
  if timeout 300 ./bin/spectraclip --log-level info train --variant drcnn --out "$dir" --nproc-per-node "$n" --dist-timeout 120s \
      training.device="$dev" training.trainer.max_epochs=1 data.root="$SCRATCH/data" data.generate_if_missing=true >"$log" 2>&1; then
    if grep -q "backend=$be" "$log"; then
      result dist ok "$be, $n process(es) on $dev: $(grep -m1 'allreduce_bytes_per_step' "$log" | grep -o 'allreduce_bytes_per_step=[0-9]*') $(grep -m1 '^\[rank 0\] test:' "$log" | sed 's/^\[rank 0\] //')"
    else
      result dist FAIL "$be, $n process(es) on $dev: the workers did not join with $be (see $(basename "$log"))"
    fi
  else
    result dist FAIL "$be, $n process(es) on $dev: $(tail -1 "$log")"; keeplog "$log"
  fi
}
if want 7; then
  say "## 7 dist"
  if [ $HAVE_CUDA = 1 ]; then
    ngpu=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 1)
    dist nccl cuda "${ngpu:-1}"
  else
    result dist skipped "nccl: no CUDA device"
  fi
fi

# --- 10 cpu (optional) ------------------------------------------------------------------
if want 10; then
  say "## 10 cpu"
  if [ $MAINDEV = cuda ]; then
    for v in drcnn concrete; do train $v cpu; done
  else
    result train skipped "CPU training: step 5 trained on the CPU already"
  fi
  if v=$(./bin/spectraclip version 2>/dev/null) && echo "$v" | grep -q '^gloo unavailable'; then
    result dist skipped "gloo: $(echo "$v" | sed -n 's/^gloo unavailable: //p')"
  else
    dist gloo cpu 2
  fi
fi
# --- 11 aoti (optional) -----------------------------------------------------------------
# aoti_row NAME PREC BATCH GO_TS GO_AOTI PY PY_COMPILE: one table row per variant.
aoti_rows() {
  "$PY" - "$@" <<'PYEOF'
import json, sys
def load(p):
    try:
        return {v["variant"]: v for v in json.load(open(p))["variants"]}
    except Exception:
        return {}
name, prec, b = sys.argv[1:4]
ts, ao, py, pc = (load(p) for p in sys.argv[4:8])
nan = float("nan")
for v in sorted(set(ts) | set(ao)):
    a = ao.get(v, {})
    st = a.get("stages", {})
    share = (sum(st.values()) - st["detector"]) / st["detector"] if st.get("detector") else nan
    f = lambda d: d.get(v, {}).get("fps") or nan
    print(f"| {name} | {prec} | {b} | {v} | {f(ao):.2f} ({a.get('detector_runtime', '?')}) | {f(ts):.2f} | {f(py):.2f} | {f(pc):.2f} | "
          f"{f(ao) / f(ts):.2f} | {f(ao) / f(pc):.2f} | {a.get('detector_fps', nan):.2f} | {share:.1%} |")
PYEOF
}
if want 11; then
  say "## 11 aoti"
  if [ $HAVE_CUDA = 1 ]; then
    kind=cuda prec=fp16 b=8 half=--half size=256x256
  else
    kind=cpu prec=fp32 b=4 half="" size=64x64
  fi
  ./bin/spectraclip export-detector --builtin --out "$SCRATCH/builtin.pt" >/dev/null 2>&1
  DETS=""
  t0=$SECONDS
  if timeout 300 ./bin/spectraclip export-detector --builtin --aoti --python "$PY" --device $kind $half --max-batch $b \
      --out "$SCRATCH/builtin.pt2" >"$SCRATCH/aoti-builtin.log" 2>&1; then
    DETS="builtin:$SCRATCH/builtin.pt:$SCRATCH/builtin.pt2"
    result aoti ok "built-in detector compiled for $kind ($prec) in $((SECONDS - t0)) s"
  else
    keeplog "$SCRATCH/aoti-builtin.log"
    result aoti FAIL "built-in package: $(tail -1 "$SCRATCH/aoti-builtin.log")"
  fi
  if [ $HAVE_CUDA = 1 ]; then
    t0=$SECONDS
    if timeout 240 "$PY" scripts/export_adaclip.py --random-weights --out "$SCRATCH/adaclip_random.pt" >"$SCRATCH/aoti-adaclip.log" 2>&1 &&
       timeout 420 "$PY" scripts/export_adaclip.py --random-weights --aoti --device cuda --half --max-batch $b \
         --out "$SCRATCH/adaclip_random.pt2" >>"$SCRATCH/aoti-adaclip.log" 2>&1; then
      DETS="$DETS adaclip:$SCRATCH/adaclip_random.pt:$SCRATCH/adaclip_random.pt2"
      result aoti ok "full-size AdaCLIP (random weights) exported and compiled (fp16) in $((SECONDS - t0)) s"
    else
      keeplog "$SCRATCH/aoti-adaclip.log"
      result aoti FAIL "AdaCLIP package: $(tail -1 "$SCRATCH/aoti-adaclip.log")"
    fi
  else
    result aoti skipped "full-size AdaCLIP package: no CUDA device"
  fi
  {
    echo ""
    echo "| detector | precision | batch | variant | Go+AOTI FPS | Go+TorchScript FPS | Python eager FPS | Python torch.compile FPS | AOTI/TorchScript | AOTI/torch.compile | Go+AOTI detector FPS | around-detector share |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  } >>"$REPORT"
  for d in $DETS; do
    IFS=: read -r name ts pt2 <<<"$d"
    common=(--device $kind --batch $b --size $size --iters 10 --warmup 3 --train-iters 0 $half --json)
    o=$SCRATCH/aoti_$name
    timeout 180 ./bin/spectraclip bench --detector "$ts" "${common[@]}" >"$o.ts.json" 2>>"$SCRATCH/aoti-bench.log" || result aoti FAIL "go torchscript $name"
    timeout 180 ./bin/spectraclip bench --detector "$ts" --compiled "$pt2" "${common[@]}" >"$o.aoti.json" 2>>"$SCRATCH/aoti-bench.log" || result aoti FAIL "go aoti $name"
    timeout 180 "$PY" scripts/bench_reference.py --detector "$ts" "${common[@]}" >"$o.py.json" 2>>"$SCRATCH/aoti-bench.log" || result aoti FAIL "python $name"
    timeout 300 "$PY" scripts/bench_reference.py --detector "$ts" "${common[@]}" --compile >"$o.pc.json" 2>>"$SCRATCH/aoti-bench.log" || result aoti FAIL "python torch.compile $name"
    aoti_rows "$name" "$prec" "$b" "$o.ts.json" "$o.aoti.json" "$o.py.json" "$o.pc.json" >>"$REPORT"
  done
  rm -f "$SCRATCH"/*.pt "$SCRATCH"/*.pt2
fi
rm -rf "$SCRATCH/data" "$SCRATCH"/run_*/checkpoints "$SCRATCH"/run_dist_*

say ""
say "## summary"
fails=0
for k in preflight build version tests train bench dist aoti; do
  [ -n "${RESULT[$k]:-}" ] || continue
  case "${RESULT[$k]}" in *FAIL*) st=FAIL; fails=$((fails + 1)) ;; *ok*) st=ok ;; *) st=skipped ;; esac
  say "- $k: $st"
done
[ -n "${KEEP_SCRATCH:-}" ] || rm -rf "$SCRATCH"
exit $((fails > 0))

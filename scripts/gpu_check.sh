#!/usr/bin/env bash
# gpu_check.sh — the one prepared check for a GPU machine (PyTorch 2.x with CUDA, CMake,
# no Go, no internet). Run from the repository root, with the Go test binaries and the
# spectraclip binary built beforehand on a CPU machine:
#   make gpu-prep        # on the CPU machine: builds bin/spectraclip and bin/*.test
#   bash scripts/gpu_check.sh   # on the GPU machine; writes a table to $OUT (or ./gpu_out)
# It rebuilds csrc/ against the GPU machine's LibTorch (the Go binaries link only
# libspectraclip_c.so, found through their RUNPATH $ORIGIN/../build), runs the CUDA tests
# and the speed benchmarks, and writes gpu_check.md with the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
log() { echo "[gpu_check] $*" | tee -a "$OUT/gpu_check.log"; }

TORCH_CMAKE=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
if [ -z "$TORCH_CMAKE" ]; then log "no PyTorch found for $PY"; exit 1; fi
log "torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")')"
rm -rf build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTORCH_DIR="$TORCH_CMAKE/Torch" >"$OUT/cmake.log" 2>&1 || { log "cmake configure failed"; tail -20 "$OUT/cmake.log"; exit 1; }
cmake --build build -j "$(nproc)" >>"$OUT/cmake.log" 2>&1 || { log "csrc build failed"; tail -40 "$OUT/cmake.log"; exit 1; }
TORCH_LIB=$($PY -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$PWD/build:$TORCH_LIB:${LD_LIBRARY_PATH:-}"
log "csrc rebuilt against $TORCH_CMAKE"

./bin/spectraclip version | tee -a "$OUT/gpu_check.log"

# CUDA tests of the torch binding and of the detector node (built with go test -c).
for t in bin/torch.test bin/detect.test; do
  [ -x "$t" ] || { log "missing $t (run make gpu-prep on the CPU machine)"; continue; }
  log "running $t -test.run CUDA"
  "$t" -test.run 'CUDA|Cuda|GPU' -test.v >"$OUT/$(basename "$t").log" 2>&1
  log "$t exit $? ($(grep -c -- '--- PASS' "$OUT/$(basename "$t").log") passed, $(grep -c -- '--- FAIL' "$OUT/$(basename "$t").log") failed, $(grep -c -- '--- SKIP' "$OUT/$(basename "$t").log") skipped)"
done

# Detectors: the built-in one and the full-size random-weights AdaCLIP export.
./bin/spectraclip export-detector --builtin --out "$OUT/builtin.pt" >/dev/null
if $PY scripts/export_adaclip.py --random-weights --out "$OUT/adaclip_random.pt" >"$OUT/export.log" 2>&1; then
  log "exported full-size AdaCLIP (random weights)"
  DETS="builtin:$OUT/builtin.pt adaclip:$OUT/adaclip_random.pt"
else
  log "AdaCLIP export failed (see export.log)"
  DETS="builtin:$OUT/builtin.pt"
fi

{
  echo "# GPU check $(date -u +%Y-%m-%d) on $($PY -c 'import torch; print(torch.cuda.get_device_name(0))')"
  echo
  echo "| detector | precision | batch | variant | Go FPS | Go detector FPS | around-detector share | Python FPS | ratio |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$OUT/gpu_check.md"
for d in $DETS; do
  name=${d%%:*}; file=${d#*:}
  for half in "" "--half"; do
    prec=fp32; [ -n "$half" ] && prec=fp16
    for b in 1 8; do
      ./bin/spectraclip bench --device cuda --detector "$file" --batch $b --size 256x256 --iters 10 --warmup 3 --train-iters 0 $half --json >"$OUT/go_${name}_${prec}_b$b.json" 2>>"$OUT/gpu_check.log" || log "go bench $name $prec b$b failed"
      $PY scripts/bench_reference.py --device cuda --detector "$file" --batch $b --size 256x256 --iters 10 --warmup 3 --train-iters 0 $half --json >"$OUT/py_${name}_${prec}_b$b.json" 2>>"$OUT/gpu_check.log" || log "python bench $name $prec b$b failed"
      $PY - "$OUT/go_${name}_${prec}_b$b.json" "$OUT/py_${name}_${prec}_b$b.json" "$name" "$prec" "$b" >>"$OUT/gpu_check.md" <<'PYEOF'
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
    tot = sum(st.values()) if st else 0
    share = (tot - st.get("detector", 0)) / st["detector"] if st.get("detector") else float("nan")
    ratio = g.get("fps", 0) / p["fps"] if p.get("fps") else float("nan")
    print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {v} | {g.get('fps', float('nan')):.2f} | {g.get('detector_fps', float('nan')):.2f} | {share:.1%} | {p.get('fps', float('nan')):.2f} | {ratio:.2f} |")
PYEOF
    done
  done
done
# A short DRCNN training run on CUDA (data generated on the spot), then the real
# TensorBoard reads its event files, when the machine has it.
if ./bin/spectraclip --log-level warn train --variant drcnn --out "$OUT/run" training.device=cuda \
    training.trainer.max_epochs=3 data.root="$OUT/data" >"$OUT/train.log" 2>&1; then
  log "CUDA training: $(grep '^test:' "$OUT/train.log")"
  echo -e "\nCUDA training (3 epochs, built-in detector): $(grep '^test:' "$OUT/train.log")" >>"$OUT/gpu_check.md"
else
  log "CUDA training failed (see train.log)"; tail -5 "$OUT/train.log"
fi
if $PY -c 'import tensorboard' 2>/dev/null && [ -d "$OUT/run/tb" ]; then
  $PY - "$OUT/run/tb" >>"$OUT/gpu_check.md" 2>>"$OUT/gpu_check.log" <<'PYEOF'
import glob, sys
from tensorboard.backend.event_processing import event_accumulator as ea
for f in glob.glob(sys.argv[1] + "/*tfevents*"):
    acc = ea.EventAccumulator(f, size_guidance={ea.IMAGES: 0, ea.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    print(f"\nTensorBoard {__import__('tensorboard').__version__} read {f}: {len(tags['scalars'])} scalar tags "
          f"(e.g. {tags['scalars'][:4]}), {len(tags['images'])} image tags, text: {'config' in str(tags)}")
PYEOF
fi
rm -rf "$OUT/data" "$OUT/run/checkpoints"
cat "$OUT/gpu_check.md"

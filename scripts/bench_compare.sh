#!/usr/bin/env bash
# bench_compare.sh: run `spectraclip bench` and its Python peer (scripts/bench_reference.py)
# on the same detector, sizes, threads and device, and print Go against Python per variant.
#
# Usage: scripts/bench_compare.sh [--batch B] [--size HxW] [--threads N] [--device D]
#                                 [--variant V] [--iters N] [--warmup N] [--train-iters N] [--half]
#                                 [--keep DIR]
#
# It builds nothing: it expects bin/spectraclip (`make build`; override with $SPECTRACLIP) and
# /usr/bin/python3 with torch (override with $PYTHON). The detector is the built-in one,
# written with `spectraclip export-detector --builtin`, so both sides run the same TorchScript.
# Threads default to `nproc`; device defaults to cpu ("auto" picks cuda when the Python side
# sees a GPU). --keep DIR leaves the detector and both JSON reports in DIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bin="${SPECTRACLIP:-$root/bin/spectraclip}"
py="${PYTHON:-/usr/bin/python3}"

batch=4
size=256x256
threads="$(nproc 2>/dev/null || echo 1)"
device=cpu
variant=all
iters=5
warmup=1
train_iters=3
half=()
keep=""

usage() { sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "bench_compare: $1 needs a value" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  case "$1" in
    --batch) need "$@"; batch="$2"; shift 2 ;;
    --size) need "$@"; size="$2"; shift 2 ;;
    --threads) need "$@"; threads="$2"; shift 2 ;;
    --device) need "$@"; device="$2"; shift 2 ;;
    --variant) need "$@"; variant="$2"; shift 2 ;;
    --iters) need "$@"; iters="$2"; shift 2 ;;
    --warmup) need "$@"; warmup="$2"; shift 2 ;;
    --train-iters) need "$@"; train_iters="$2"; shift 2 ;;
    --half) half=(--half); shift ;;
    --keep) need "$@"; keep="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "bench_compare: unknown argument $1" >&2; usage ;;
  esac
done

for n in batch threads iters warmup train_iters; do
  v="${!n}"
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "bench_compare: --${n//_/-} $v: want a non-negative integer" >&2; exit 2; }
done
[[ "$size" =~ ^[0-9]+[xX][0-9]+$ ]] || { echo "bench_compare: --size $size: want HxW, e.g. 256x256" >&2; exit 2; }

if [ ! -x "$bin" ]; then
  echo "bench_compare: $bin not found or not executable; run 'make build' first" >&2
  exit 1
fi
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "bench_compare: $py cannot import torch (install python3-torch)" >&2
  exit 1
fi
if [ "$device" = auto ]; then
  device="$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
fi

if [ -n "$keep" ]; then
  mkdir -p "$keep"
  tmp="$keep"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
fi

"$bin" export-detector --builtin --out "$tmp/builtin.pt" >/dev/null

common=(--detector "$tmp/builtin.pt" --json --batch "$batch" --size "$size" --threads "$threads"
        --device "$device" --variant "$variant" --iters "$iters" --warmup "$warmup"
        --train-iters "$train_iters" "${half[@]}")

echo "running Go:     $bin bench ${common[*]}" >&2
"$bin" bench "${common[@]}" >"$tmp/go.json"
echo "running Python: $py scripts/bench_reference.py ${common[*]}" >&2
"$py" "$here/bench_reference.py" "${common[@]}" >"$tmp/py.json"

"$py" - "$tmp/go.json" "$tmp/py.json" <<'EOF'
import json
import sys


def load(path, side):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("bench_compare: %s report %s: %s" % (side, path, e))


go, py = load(sys.argv[1], "Go"), load(sys.argv[2], "Python")


def num(v):
    """num returns a positive figure or None (missing, null, 0: nothing measured)."""
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def cell(v):
    return "%10.2f" % v if v is not None else "%10s" % "-"


def ratio(a, b):
    return "%8.2fx" % (a / b) if a is not None and b is not None else "%9s" % "-"


print("Go: %s threads, %s, LibTorch %s · Python: %s threads, %s, torch %s" % (
    go.get("threads"), go.get("device"), go.get("libtorch", "?"),
    py.get("threads"), py.get("device"), py.get("torch", "?")))
print("batch %s × %s × %s bands · detector %s" % (py.get("batch"), py.get("size"), py.get("bands"), py.get("detector")))
print()
print("%-9s %10s %10s %9s %10s %10s %9s %10s %10s %9s" % (
    "variant", "Go FPS", "Py FPS", "ratio", "Go det", "Py det", "ratio", "Go st/s", "Py st/s", "ratio"))
pyv = {v["variant"]: v for v in py.get("variants", [])}
for g in go.get("variants", []):
    p = pyv.get(g["variant"], {})
    row = [(num(g.get(k)), num(p.get(k))) for k in ("fps", "detector_fps", "train_steps_per_s")]
    print("%-9s " % g["variant"] + " ".join("%s %s %s" % (cell(a), cell(b), ratio(a, b)) for a, b in row))
missing = sorted(set(pyv) - {g["variant"] for g in go.get("variants", [])})
if missing:
    print("only in the Python report: %s" % ", ".join(missing))
print()
print("ratio = Go / Python (above 1: Go is faster); det = detector FPS; st/s = training steps per second")
EOF

#!/usr/bin/env bash
# bench_compare.sh: run `spectraclip bench` and the Python peers (scripts/bench_reference.py
# as is, with tcmalloc preloaded, and under torch.compile) on the same detector, sizes and
# device, and print Go against each peer per variant and thread count.
#
# Usage: scripts/bench_compare.sh [--batch B] [--size HxW] [--threads 1,2] [--device D]
#                                 [--variant V] [--iters N] [--warmup N] [--train-iters N]
#                                 [--rounds N] [--half] [--no-tcmalloc] [--[no-]compiled] [--[no-]aoti] [--keep DIR]
#
# It builds nothing: it expects bin/spectraclip (`make build`; override with $SPECTRACLIP),
# /usr/bin/python3 with torch (override with $PYTHON) and tcmalloc (libtcmalloc-minimal4;
# override the library with $TCMALLOC). The detector is the built-in one, written with
# `spectraclip export-detector --builtin`, so every side runs the same TorchScript.
# For each thread count (default 1,2), round (default 2) and variant it runs Go, the naive
# peer and the tcmalloc peer back to back, each variant in a fresh process, so that the
# three see the same load; the table shows the best of the rounds per side and the spread
# of the per-round Go/tcmalloc ratios. --keep DIR leaves the detector and every JSON report.
# The compiled peer (bench_reference.py --compile: the same pipeline under torch.compile,
# inductor, with tcmalloc preloaded unless --no-tcmalloc) runs after them, on by default
# where $PYTHON's torch has torch.compile (>= 2.0; --no-compiled turns it off, --compiled
# insists); its compile time is outside its FPS and shown in its own column, and a failed
# compiled run is reported and left out of the table rather than ending the comparison.
# Go+AOTI is Go with the detector compiled ahead of time (`export-detector --builtin --aoti`
# through $PYTHON, then `bench --compiled`): on by default where both the Go binary's LibTorch
# and $PYTHON's torch can build and run packages (2.6 or newer, the same version; --no-aoti
# turns it off, --aoti insists); the package's compile time is shown once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bin="${SPECTRACLIP:-$root/bin/spectraclip}"
py="${PYTHON:-/usr/bin/python3}"
tcm="${TCMALLOC:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4}"

batch=4
size=256x256
threads=1,2
device=cpu
variant=all
iters=5
warmup=1
train_iters=0
rounds=2
half=()
keep=""
use_tcm=1
compiled=auto
aoti=auto

usage() { sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
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
    --rounds) need "$@"; rounds="$2"; shift 2 ;;
    --half) half=(--half); shift ;;
    --no-tcmalloc) use_tcm=0; shift ;;
    --compiled) compiled=1; shift ;;
    --no-compiled) compiled=0; shift ;;
    --aoti) aoti=1; shift ;;
    --no-aoti) aoti=0; shift ;;
    --keep) need "$@"; keep="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "bench_compare: unknown argument $1" >&2; usage ;;
  esac
done

for n in batch iters warmup train_iters rounds; do
  v="${!n}"
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "bench_compare: --${n//_/-} $v: want a non-negative integer" >&2; exit 2; }
done
[ "$rounds" -ge 1 ] || { echo "bench_compare: --rounds 0: want at least 1" >&2; exit 2; }
[[ "$threads" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench_compare: --threads $threads: want a list like 1,2" >&2; exit 2; }
[[ "$size" =~ ^[0-9]+[xX][0-9]+$ ]] || { echo "bench_compare: --size $size: want HxW, e.g. 256x256" >&2; exit 2; }
case "$variant" in
  all) variants=(pca drcnn concrete) ;;
  pca|drcnn|concrete) variants=("$variant") ;;
  *) echo "bench_compare: --variant $variant: want pca, drcnn, concrete or all" >&2; exit 2 ;;
esac

if [ ! -x "$bin" ]; then
  echo "bench_compare: $bin not found or not executable; run 'make build' first" >&2
  exit 1
fi
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "bench_compare: $py cannot import torch (install python3-torch)" >&2
  exit 1
fi
torch_version="$("$py" -c 'import torch; print(torch.__version__)')"
has_compile="$("$py" -c 'import torch; print(1 if callable(getattr(torch, "compile", None)) else 0)')"
if [ "$compiled" = auto ]; then
  compiled="$has_compile"
elif [ "$compiled" = 1 ] && [ "$has_compile" != 1 ]; then
  echo "bench_compare: --compiled needs torch >= 2.0 (torch.compile) in $py, which has torch $torch_version; pass --no-compiled" >&2
  exit 2
fi
echo "bench_compare: Python peer $py: torch $torch_version; compiled peer (torch.compile, inductor): $([ "$compiled" = 1 ] && echo on || echo "off$([ "$has_compile" = 1 ] || echo ", torch < 2.0")")" >&2
if [ "$use_tcm" = 1 ] && [ ! -r "$tcm" ]; then
  echo "bench_compare: $tcm not found: install libtcmalloc-minimal4 (make deps), set \$TCMALLOC, or pass --no-tcmalloc" >&2
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
if [ "$aoti" != 0 ]; then
  kind="$device"; kind="${kind%%:*}"
  aoti_t0=$SECONDS
  if "$bin" export-detector --builtin --aoti --python "$py" --device "$kind" "${half[@]}" --out "$tmp/builtin.pt2" \
      >/dev/null 2>"$tmp/aoti-export.err"; then
    aoti=1
    echo "bench_compare: compiled the detector package in $((SECONDS - aoti_t0)) s" >&2
    echo "$((SECONDS - aoti_t0))" >"$tmp/aoti-compile-s"
  elif [ "$aoti" = 1 ]; then
    echo "bench_compare: --aoti: export-detector --aoti failed: $(tail -1 "$tmp/aoti-export.err")" >&2
    exit 1
  else
    echo "bench_compare: Go+AOTI off: $(tail -1 "$tmp/aoti-export.err")" >&2
    aoti=0
  fi
fi

IFS=, read -r -a thread_list <<<"$threads"
for t in "${thread_list[@]}"; do
  common=(--detector "$tmp/builtin.pt" --json --batch "$batch" --size "$size" --threads "$t"
          --device "$device" --iters "$iters" --warmup "$warmup" --train-iters "$train_iters" "${half[@]}")
  peers="$py scripts/bench_reference.py (the same)"
  [ "$use_tcm" = 1 ] && peers="$peers; with LD_PRELOAD=$tcm"
  if [ "$compiled" = 1 ]; then
    peers="$peers; with --compile"
    [ "$use_tcm" = 1 ] && peers="$peers and LD_PRELOAD"
  fi
  echo "threads $t: $bin bench ${common[*]} --variant V; $peers" >&2
  for r in $(seq 1 "$rounds"); do
    for v in "${variants[@]}"; do
      echo "  round $r $v" >&2
      "$bin" bench "${common[@]}" --variant "$v" >"$tmp/go-t$t-r$r-$v.json" 2> >(grep -v 'level=warning' >&2)
      if [ "$aoti" = 1 ]; then
        "$bin" bench "${common[@]}" --compiled "$tmp/builtin.pt2" --variant "$v" >"$tmp/goaoti-t$t-r$r-$v.json" 2> >(grep -v 'level=warning' >&2)
      fi
      "$py" "$here/bench_reference.py" "${common[@]}" --variant "$v" >"$tmp/naive-t$t-r$r-$v.json"
      if [ "$use_tcm" = 1 ]; then
        LD_PRELOAD="$tcm" "$py" "$here/bench_reference.py" "${common[@]}" --variant "$v" >"$tmp/tcmalloc-t$t-r$r-$v.json"
      fi
      if [ "$compiled" = 1 ]; then
        out="$tmp/compiled-t$t-r$r-$v"
        preload=()
        [ "$use_tcm" = 1 ] && preload=(env LD_PRELOAD="$tcm")
        if ! "${preload[@]}" "$py" "$here/bench_reference.py" "${common[@]}" --variant "$v" --compile >"$out.json" 2>"$out.err"; then
          echo "bench_compare: compiled peer failed (threads $t, round $r, $v): $( (grep '^bench_reference:' "$out.err" || grep -v '^\s*$' "$out.err") | tail -1)" >&2
          mv "$out.json" "$out.failed"
        fi
      fi
    done
  done
done

"$py" - "$tmp" "$threads" "$rounds" "$compiled" "$aoti" "${variants[@]}" <<'EOF2'
import json
import os
import sys

tmp, threads, rounds, compiled, aoti, variants = (sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]),
                                                  sys.argv[4] == "1", sys.argv[5] == "1", sys.argv[6:])


def load(side, t, r, v):
    path = os.path.join(tmp, "%s-t%s-r%d-%s.json" % (side, t, r, v))
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            rep = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("bench_compare: %s report %s: %s" % (side, path, e))
    for row in rep.get("variants", []):
        if row.get("variant") == v:
            row = dict(row)
            row["_peak"] = row.get("peak_rss_mb") or rep.get("peak_rss_mb")
            row["_rep"] = rep
            return row
    sys.exit("bench_compare: %s report %s lacks variant %s" % (side, path, v))


def num(v):
    """num returns a positive figure or None (missing, null, 0: nothing measured)."""
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def best(rows, key):
    vals = [num(r.get(key)) for r in rows if r is not None]
    vals = [x for x in vals if x is not None]
    return max(vals) if vals else None


def cell(v, fmt="%9.2f"):
    return fmt % v if v is not None else "%9s" % "-"


def ratio(a, b):
    return "%7.2fx" % (a / b) if a is not None and b is not None else "%8s" % "-"


first = load("go", threads[0], 1, variants[0])["_rep"]
pyrep = load("naive", threads[0], 1, variants[0])["_rep"]
print("Go: %s, LibTorch %s · Python: torch %s · batch %s × %s × %s bands · detector %s" % (
    first.get("device"), first.get("libtorch", "?"), pyrep.get("torch", "?"), first.get("batch"),
    first.get("size"), first.get("bands"), first.get("detector")))
print("best of %d rounds per side; each variant in a fresh process; ratios above 1: Go is faster" % rounds)
comp_reps = [r["_rep"] for r in (load("compiled", t, i, v) for t in threads for i in range(1, rounds + 1)
                                 for v in variants) if r is not None]
if compiled:
    if comp_reps:
        modes = sorted({r.get("compiled", "?") for r in comp_reps})
        notes = sorted({r.get("compile_note") for r in comp_reps if r.get("compile_note")})
        print("compiled: torch %s, torch.compile (inductor, default mode, static shapes) of the %s, allocator %s;"
              " compile s = first call (compilation + one run), not in its FPS%s" % (
                  comp_reps[0].get("torch", "?"), " / ".join("whole pipeline" if m == "pipeline" else
                                                          "code around the TorchScript detector" for m in modes),
                  comp_reps[0].get("allocator", "?"), "; " + "; ".join(notes) if notes else ""))
    else:
        print("compiled: every compiled run failed (see the messages above)")
train = any(num(load("go", t, 1, v).get("train_steps_per_s")) for t in threads for v in variants)
for t in threads:
    print()
    print("threads %s" % t)
    hdr = "%-9s %9s %9s %9s %8s %8s %15s %9s %8s %8s %8s" % (
        "variant", "Go FPS", "naive", "tcmalloc", "Go/naive", "Go/tcm", "Go/tcm rounds", "Go pipe/det",
        "Go MB", "naive MB", "tcm MB")
    if compiled:
        hdr += " %9s %8s %8s %9s" % ("compiled", "Go/comp", "comp MB", "compile s")
    if aoti:
        hdr += " %9s %9s %9s %8s" % ("Go+AOTI", "AOTI/Go", "AOTI/comp", "AOTI MB")
    if train:
        hdr += " %9s %9s %8s" % ("Go st/s", "tcm st/s", "Go/tcm")
    print(hdr)
    for v in variants:
        side = {s: [load(s, t, r, v) for r in range(1, rounds + 1)] for s in ("go", "naive", "tcmalloc", "compiled", "goaoti")}
        g, n, c = best(side["go"], "fps"), best(side["naive"], "fps"), best(side["tcmalloc"], "fps")
        per_round = [num(a.get("fps")) / num(b.get("fps")) for a, b in zip(side["go"], side["tcmalloc"])
                     if a is not None and b is not None and num(a.get("fps")) and num(b.get("fps"))]
        spread = "%6.2f–%-6.2f" % (min(per_round), max(per_round)) if per_round else "%15s" % "-"
        pipe_det = [num(a.get("fps")) / num(a.get("detector_fps")) for a in side["go"]
                    if num(a.get("fps")) and num(a.get("detector_fps"))]
        pd = "%9.2f" % max(pipe_det) if pipe_det else "%9s" % "-"
        mb = lambda rows: min((r["_peak"] for r in rows if r is not None and r.get("_peak")), default=None)
        row = "%-9s %s %s %s %s %s %15s %s %s %s %s" % (
            v, cell(g), cell(n), cell(c), ratio(g, n), ratio(g, c), spread, pd,
            cell(mb(side["go"]), "%8.0f"), cell(mb(side["naive"]), "%8.0f"), cell(mb(side["tcmalloc"]), "%8.0f"))
        if compiled:
            k = best(side["compiled"], "fps")
            cs = [num(r.get("compile_s")) for r in side["compiled"] if r is not None and num(r.get("compile_s"))]
            row += " %s %s %s %s" % (cell(k), ratio(g, k), cell(mb(side["compiled"]), "%8.0f"),
                                     cell(min(cs) if cs else None))
        if aoti:
            a = best(side["goaoti"], "fps")
            k = best(side["compiled"], "fps") if compiled else None
            row += " %s  %s  %s %s" % (cell(a), ratio(a, g), ratio(a, k), cell(mb(side["goaoti"]), "%8.0f"))
        if train:
            gs, cs = best(side["go"], "train_steps_per_s"), best(side["tcmalloc"], "train_steps_per_s")
            row += " %s %s %s" % (cell(gs), cell(cs), ratio(gs, cs))
        print(row)
print()
print("Go pipe/det = Go pipeline FPS / Go detector-alone FPS (pre + module + post) of the same run (best round)")
print("MB = the variant's own peak RSS (Go: its bench child process; Python: one process per variant)")
if compiled:
    print("compiled = the same Python pipeline under torch.compile (inference only; its training runs eager);"
          " compile s = the shortest first call over the rounds")
if aoti:
    cs = open(os.path.join(tmp, "aoti-compile-s")).read().strip() if os.path.exists(os.path.join(tmp, "aoti-compile-s")) else "?"
    print("Go+AOTI = Go with the detector as an AOTInductor package (bench --compiled; export-detector --aoti took %s s"
          " once, outside its FPS); AOTI/Go = against Go with TorchScript, AOTI/comp = against torch.compile" % cs)
EOF2

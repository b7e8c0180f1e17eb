#!/usr/bin/env bash
# bench_dist.sh — data-parallel speed on this machine: 1 rank vs 2 ranks (Gloo, one LibTorch thread each),
# drcnn on a synthetic set of 40 frames SIZE×SIZE (default 64) (32 train), batch 2 per rank, 3 epochs; the
# figure is the train-loop steps/s of epochs 2-3 (the first warms up). Runs interleaved A/B,
# ROUNDS times. Usage (repository root, after make build): bash scripts/bench_dist.sh [BIN] [ROUNDS]
set -euo pipefail
BIN=${1:-./bin/spectraclip}
ROUNDS=${2:-2}
SIZE=${SIZE:-64} # frame height and width (and the detector's image size)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
COMMON=(--variant drcnn data.root=$W/data data.generate_if_missing=true data.synth.frames=40 data.synth.height=$SIZE data.synth.width=$SIZE
  "data.train_ids=[$(seq -s, 0 31)]" "data.val_ids=[32,33,34,35]" "data.test_ids=[36,37,38,39]"
  training.trainer.max_epochs=3 +pipeline.detector.image_size=$SIZE training.threads=1 data.batch_size=2)
sps() { grep 'msg="train steps"' "$1" | grep -v 'epoch=1 ' | grep 'rank=0' | sed 's/.*steps_per_s=\([0-9.]*\).*/\1/' | awk '{s+=$1; n++} END {printf "%.3f", s/n}'; }
bytes() { grep -m1 -o 'allreduce_bytes_per_step=[0-9]*' "$1" | cut -d= -f2; }
# share of rank 0's train-loop time spent in the all-reduce (waiting for the other rank included)
comm() { grep 'msg="train steps"' "$1" | grep -v 'epoch=1 ' | grep 'rank=0' | sed 's/.*allreduce_seconds=\([0-9.]*\).*seconds=\([0-9.]*\).*/\1 \2/' | awk '{a+=$1; s+=$2} END {printf "%.0f", 100*a/s}'; }
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$W/one" "$W/two"
  OMP_NUM_THREADS=1 "$BIN" --log-level debug train "${COMMON[@]}" --out "$W/one" >"$W/one.log" 2>&1
  OMP_NUM_THREADS=1 "$BIN" --log-level debug train "${COMMON[@]}" --out "$W/two" --nproc-per-node 2 >"$W/two.log" 2>&1
  a=$(sps "$W/one.log"); b=$(sps "$W/two.log")
  awk -v a="$a" -v b="$b" -v r="$r" -v by="$(bytes "$W/two.log")" -v c="$(comm "$W/two.log")" 'BEGIN {
    printf "round %d: 1 rank %.3f steps/s (%.2f frames/s); 2 ranks %.3f steps/s each (%.2f frames/s); scaling efficiency %.0f%%; %s bytes all-reduced per step, %s%% of rank 0'"'"'s step time in the all-reduce\n",
      r, a, 2*a, b, 4*b, 100*(4*b)/(2*2*a), by, c }'
done

#!/usr/bin/env bash
# check_reconfigure.sh — one build folder configured for Debian's LibTorch, then for the
# project's PyPI torch (.venv), then for Debian's again: each time the shim's link line must
# name only that LibTorch's libraries, and Gloo must be on exactly where that LibTorch has
# its own gloo headers (Debian) (CMake caches find_path/find_library results; CMakeLists.txt
# forgets them when TORCH_DIR changes). Configures only; builds nothing. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
wheel=$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')/Torch
site=$(cd "$wheel/../../../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
check() { # check NAME WANT_PATTERN BAD_PATTERN GLOO(0|1)
  local link="$dir/CMakeFiles/spectraclip_c.dir/link.txt" flags="$dir/CMakeFiles/spectraclip_c.dir/flags.make"
  local gloo=0
  grep -q 'SC_WITH_GLOO' "$flags" && gloo=1
  if [ "$gloo" != "$4" ]; then
    echo "check_reconfigure: $1: Gloo is $([ $gloo = 1 ] && echo on || echo off), want $([ "$4" = 1 ] && echo on || echo off) ($(grep -o 'gloo headers in [^ ]*\|SC_GLOO_MISSING' "$dir.log" | head -1)"; fails=$((fails + 1))
  elif ! grep -q "$2" "$link"; then
    echo "check_reconfigure: $1: the link line names no library under $2"; fails=$((fails + 1))
  elif grep -q "$3" "$link"; then
    echo "check_reconfigure: $1: the link line still names $(grep -o "$3[^ ]*" "$link" | head -1)"; fails=$((fails + 1))
  else
    echo "check_reconfigure: $1: ok"
  fi
}
cmake -S . -B "$dir" -DTORCH_DIR= >"$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
check "debian" "/usr/lib/x86_64-linux-gnu/libtorch" "$site" 1
cmake -S . -B "$dir" -DTORCH_DIR="$wheel" >"$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
check "debian -> pip" "$site/torch/lib/libtorch" "/usr/lib/x86_64-linux-gnu/libtorch\|/usr/lib/x86_64-linux-gnu/libc10" 0
cmake -S . -B "$dir" -DTORCH_DIR= >"$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
check "pip -> debian" "/usr/lib/x86_64-linux-gnu/libtorch" "$site" 1
rm -f "$dir.log"
exit $((fails > 0))

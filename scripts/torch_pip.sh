#!/usr/bin/env bash
# torch_pip.sh VENV VERSION — the project's own PyTorch from PyPI (make deps TORCH=pip):
# torch==VERSION with the NVIDIA wheels its CUDA build depends on (CUDA runtime, cuBLAS,
# cuDNN, NCCL: libraries and headers), plus the two header parts of the CUDA toolkit that
# the runtime's headers include and the runtime wheel lacks: CRT (cuda_runtime.h →
# crt/host_config.h) and CCCL (cuda_fp16.h → nv/target; CUDA 13 keeps it in include/cccl),
# at the toolkit version torch itself pins; and numpy, scipy, PyYAML and TensorBoard (an
# independent reader of the event files) for the tests' references.
# Everything goes into the virtual environment VENV and nowhere else; a VENV that already
# has all of it is left as it is.
set -euo pipefail
venv=${1:-.venv} version=${2:-2.11.0}
py=${PYTHON_FOR_VENV:-python3}
# never the system Pythons: Debian's /usr/bin/python3 keeps its own python3-torch 1.13
if [ ! -x "$venv/bin/python" ]; then
  echo "torch_pip: creating $venv with $("$py" --version 2>&1)"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
have() {
  "$vpy" - "$version" <<'PYEOF' 2>/dev/null
import glob, os, sys, torch, numpy, scipy, yaml, tensorboard
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
site = os.path.dirname(os.path.dirname(torch.__file__))
if torch.version.cuda:
    for part in ("cccl/nv/target", "crt/host_config.h"):
        assert glob.glob(os.path.join(site, "nvidia", "cu*", "include", part)), "no " + part
PYEOF
}
if have; then
  exit 0
fi
echo "torch_pip: installing torch==$version and its CUDA wheels into $venv"
"$vpy" -m pip install -q --disable-pip-version-check "torch==$version" numpy scipy pyyaml tensorboard
# the CUDA toolkit meta-package torch pins (e.g. cuda-toolkit==13.0.2), with its header parts
ct=$("$vpy" - <<'PYEOF'
import importlib.metadata as m, re
for r in m.distribution("torch").requires or []:
    g = re.match(r"cuda-toolkit(\[[^\]]*\])?\s*==\s*([0-9.]+)", r)
    if g:
        print(g.group(2))
        break
PYEOF
)
if [ -n "$ct" ]; then
  "$vpy" -m pip install -q --disable-pip-version-check "cuda-toolkit[cccl,crt]==$ct"
fi
if ! have; then
  echo "torch_pip: $venv still lacks torch $version, numpy, scipy, PyYAML, TensorBoard or the CUDA headers (CCCL, CRT)" >&2
  exit 1
fi
"$vpy" -c 'import torch; print("torch_pip:", torch.__version__, "CUDA", torch.version.cuda, "at", torch.utils.cmake_prefix_path)'

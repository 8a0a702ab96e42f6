#!/usr/bin/env bash
# Install PyTorch into the project's venv without pulling a multi-GB CUDA build onto a machine without a GPU.
#   TORCH_SPEC set      -> exactly that (`make venv TORCH_SPEC="torch==2.13.0"`), nothing probed
#   NVIDIA GPU visible  -> torch==$TORCH_VERSION from the default index (the CUDA build)
#   otherwise           -> the CPU build from PyTorch's CPU wheel index; if that index does not answer
#                          within a few seconds, torch==$TORCH_VERSION from the default index instead
# PIP (default: .venv/bin/python -m pip) lets tests watch the decision without installing anything.
set -euo pipefail
version="${TORCH_VERSION:-2.13.0}"
index="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
pip="${PIP:-.venv/bin/python -m pip}"
if [ -n "${TORCH_SPEC:-}" ]; then
  echo "set-up: installing $TORCH_SPEC (TORCH_SPEC)"
  exec $pip install -q $TORCH_SPEC
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "set-up: NVIDIA GPU found; installing torch==$version (CUDA build) from the default index"
  exec $pip install -q "torch==$version"
fi
if python3 - "$index" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=4).close()
except Exception:
    sys.exit(1)
PY
then
  echo "set-up: no GPU; installing the CPU build torch==$version from $index"
  exec $pip install -q --index-url "$index" "torch==$version"
fi
echo "set-up: no GPU and $index did not answer; installing torch==$version from the default index" \
     "(a CPU build only where that index or a local wheel offers one; set TORCH_SPEC to choose)"
exec $pip install -q "torch==$version"

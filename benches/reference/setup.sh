#!/usr/bin/env bash
# Installs the PyTorch used by the reference benchmark into
# benches/reference/.venv (gitignored). PyTorch's CPU-only index first (a
# 200 MB wheel), PyPI's `torch` when that index cannot be reached (the
# machines these benchmarks were measured on reach only PyPI; its wheel
# brings CUDA libraries along, ~3 GB, and runs on the CPU the same).
# TORCH_INDEX=pypi skips the CPU index.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
fi
pip=("$here/.venv/bin/pip" --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
"${pip[@]}" install -q numpy
if ! "$here/.venv/bin/python" -c "import torch" 2>/dev/null; then
    cpu_index=https://download.pytorch.org/whl/cpu
    if [ "${TORCH_INDEX:-cpu}" != pypi ] &&
        "${pip[@]}" install -q --timeout 15 --retries 0 torch --index-url "$cpu_index"; then
        echo "torch from $cpu_index" >&2
    else
        echo "PyTorch's CPU index unreachable or skipped; installing torch from PyPI" >&2
        "${pip[@]}" install -q torch
    fi
fi
"$here/.venv/bin/python" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"

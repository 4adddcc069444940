#!/usr/bin/env bash
# Installs the PyTorch used by the reference benchmark into
# benches/reference/.venv (gitignored). CPU wheels from PyTorch's index.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q --upgrade pip
"$here/.venv/bin/pip" install -q numpy
"$here/.venv/bin/python" -c "import torch" 2>/dev/null ||
    "$here/.venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu
"$here/.venv/bin/python" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"

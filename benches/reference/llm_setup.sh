#!/usr/bin/env bash
# Installs llama-cpp-python (the llama.cpp reference for benches/llm_side_by_side.sh)
# into benches/reference/llm-venv (ignored by git). Never needed by tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/llm-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    printf '*\n' > "$venv/.gitignore"
fi
"$venv/bin/python" -c "import llama_cpp" 2>/dev/null ||
    CMAKE_BUILD_PARALLEL_LEVEL=2 "$venv/bin/pip" install -q "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
"$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"

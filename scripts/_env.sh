# Shared set-up for scripts/: a project virtualenv in .venv with the CPU build of torch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
extras=${EXTRAS:-dev}
stamp=.venv/.sessionrec-installed-${extras//,/-}  # one stamp per set of extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.2" --index-url https://download.pytorch.org/whl/cpu
  .venv/bin/python -m pip install -q -e ".[${extras}]"
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

#!/usr/bin/env bash
# Are the lowest versions that requirements.txt and requirements-dev.txt admit really enough?
# Installs exactly those (each "name>=X" as "name==X") into a fresh virtualenv and runs the quick
# tests with them: every test not marked slow, then one end-to-end run of the app (a visitor trains
# a run and downloads it).
#
#   scripts/check_floors.sh                          # with python3
#   PYTHON=python3.10 scripts/check_floors.sh        # with another Python, e.g. the oldest allowed
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

venv=$(mktemp -d "${TMPDIR:-/tmp}/vision-lab-floors.XXXXXX")
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip

floors=$(sed -nE 's/^([A-Za-z0-9_.-]+)>=([^ ;#]+).*/\1==\2/p' requirements.txt requirements-dev.txt)
echo "Floors: $(echo $floors)"

# PyPI's torch wheels for Linux are CUDA builds (gigabytes); PyTorch's own CPU-only wheels are a
# tenth of that. Take torch and torchvision from there when it can be reached.
if python -c 'import urllib.request; urllib.request.urlopen("https://download.pytorch.org/whl/cpu/", timeout=10)' 2>/dev/null; then
  echo "torch and torchvision from https://download.pytorch.org/whl/cpu"
  pip install -q --index-url https://download.pytorch.org/whl/cpu $(echo "$floors" | grep -E '^torch(vision)?==')
else
  echo "download.pytorch.org cannot be reached: torch and torchvision from the package index"
fi
pip install -q $floors
python -c 'import sys, PIL, gradio, matplotlib, numpy, safetensors, torch, torchvision
print("Installed: Python", sys.version.split()[0], *(f"{m.__name__} {m.__version__}" for m in (
    torch, torchvision, gradio, matplotlib, safetensors, PIL, numpy)))'

status=0
python -m pytest -q -p no:cacheprovider -m "not slow" || status=1
python -m pytest -q -p no:cacheprovider \
  "tests/app/test_sessions_app.py::test_a_private_run_is_never_served_by_its_path" || status=1
if [ "$status" -eq 0 ]; then echo "The floors hold."; else echo "Some floor does not hold: see above." >&2; fi
exit "$status"

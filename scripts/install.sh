#!/usr/bin/env bash
# Install the project with its extras into a virtualenv, on a fresh machine, without network beyond PyPI.
set -euo pipefail
venv=${1:-.venv}
extras=${2:-operator,cpu,dev}
py="$venv/bin/python"
[ -x "$py" ] || python3 -m venv "$venv"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -e ".[${extras}]"

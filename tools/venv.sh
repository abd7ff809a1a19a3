#!/usr/bin/env bash
# Create (once) the Python venv for the tools in tools/.venv from tools/requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stamp="$here/.venv/.requirements.installed"
if [ ! -f "$stamp" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet --upgrade pip
  "$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

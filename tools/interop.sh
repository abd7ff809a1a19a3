#!/usr/bin/env bash
# Interop check (see tools/interop_check.py): Keras 2 and Keras 3 open the .h5 files bnconv writes.
# Usage: tools/interop.sh [PATH-TO-bnconv]   (default: the release build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/venv.sh"
bnconv="${1:-$here/../.build/release/bnconv}"
status=0
for producer in keras2 keras3; do
  TF_CPP_MIN_LOG_LEVEL=3 "$here/.venv/bin/python" "$here/interop_check.py" --bnconv "$bnconv" --producer "$producer" 2>/dev/null || status=1
done
exit $status

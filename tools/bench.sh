#!/usr/bin/env bash
# bnrun vs onnxruntime on the same folded weights (tools/bench.py). Builds release first.
# Usage: tools/bench.sh [--quick] [--repeats N] [--models NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --product bnconv >/dev/null
swift build -c release --product bnrun >/dev/null
tools/venv.sh
TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/bench.py "$@"

#!/usr/bin/env bash
# bnrun vs onnxruntime and OpenVINO on keras.applications models (tools/bench_applications.py).
# Usage: tools/bench_applications.sh [--models ResNet50 ...] [--sizes 224 96] [--batches 1 16] [--threads 1 2]
#        [--repeats 5] [--isa avx2]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
bin="$(tools/build-cli.sh)"
tools/venv.sh
tools/.venv/bin/pip install -q -r tools/bench-requirements.txt
TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/bench_applications.py --bnconv "$bin/bnconv" --bnrun "$bin/bnrun" "$@"

#!/usr/bin/env bash
# bnrun vs onnxruntime and OpenVINO on the same folded weights, side by side in one run:
# the MNIST models (tools/bench.py, with the whole-process comparison), then ResNet50,
# MobileNetV2 and EfficientNetB0 at 224x224 and 96x96 (tools/bench_applications.py).
# Builds release first. Usage: tools/bench.sh [--quick] [--repeats N] [--isa avx2]
set -euo pipefail
cd "$(dirname "$0")/.."
quick=() repeats=() isa=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick); shift ;;
        --repeats) repeats=(--repeats "$2"); shift 2 ;;
        --isa) isa=(--isa "$2"); shift 2 ;;
        *) echo "usage: tools/bench.sh [--quick] [--repeats N] [--isa avx512|avx2|generic]" >&2; exit 64 ;;
    esac
done
tools/install-deps.sh
bin="$(tools/build-cli.sh)"
tools/venv.sh
tools/.venv/bin/pip install -q -r tools/bench-requirements.txt
export TF_CPP_MIN_LOG_LEVEL=3
tools/.venv/bin/python tools/bench.py --bin "$bin" "${quick[@]}" "${repeats[@]}" "${isa[@]}"
echo
tools/.venv/bin/python tools/bench_applications.py --bnconv "$bin/bnconv" --bnrun "$bin/bnrun" \
    "${repeats[@]}" "${isa[@]}"

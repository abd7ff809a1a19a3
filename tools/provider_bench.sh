#!/usr/bin/env bash
# bnkit's kernels against XNNPACK (Debian libxnnpack-dev) on the layers that dominate
# ResNet50 / MobileNetV2 / EfficientNetB0 (tools/provider_bench.c): the measurement behind
# the kernel-provider decision in docs/PERFORMANCE.md. BNKIT_MAX_ISA=avx2 caps bnkit's side.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e /usr/include/xnnpack.h ]; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q libxnnpack-dev libpthreadpool-dev >/dev/null
    else sudo apt-get install -y -q libxnnpack-dev libpthreadpool-dev >/dev/null; fi
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cc="$(command -v clang || command -v gcc)"
"$cc" -O3 -fno-math-errno -I Sources/CKernels/include -I Sources/CKernels tools/provider_bench.c Sources/CKernels/*.c \
    -o "$out/provider_bench" -lXNNPACK -lpthreadpool -lm -lpthread
"$out/provider_bench"

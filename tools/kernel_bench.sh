#!/usr/bin/env bash
# Kernel measurements (GEMM GFLOP/s on the fixture shapes; pointwise, depthwise and grouped convs at
# each level; sparse vs dense Dense by density).
# Compiles tools/kernel_bench.c with the project's C kernels and runs it. Results: docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cc="$(command -v clang || command -v gcc)"
"$cc" -O3 -fno-math-errno -I Sources/CKernels/include -I Sources/CKernels tools/kernel_bench.c Sources/CKernels/*.c -o "$out/kernel_bench" -lm -lpthread
"$out/kernel_bench"

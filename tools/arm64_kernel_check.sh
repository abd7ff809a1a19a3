#!/usr/bin/env bash
# The C kernels for arm64 run under emulation (qemu-aarch64): the GEMM's NEON tile and portable C,
# the indirect and Winograd convs, and the kernels compiled from one C body per level (activations,
# element-wise maps, softmax, layer norm, depthwise convs, pooling, moments, the sparse-input
# Dense), each value checked against a double reference or exactly where the kernel promises it
# (tools/arm64_kernel_check.c). Built by clang, the compiler SwiftPM builds the package with, for
# aarch64-linux-gnu, statically linked against Debian's cross libraries (gcc-aarch64-linux-gnu
# brings the linker and libgcc, libc6-dev-arm64-cross the C library; tools/install-deps.sh installs
# them and qemu-user-static). Checks values only: speed under emulation means nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cc="$(command -v clang || true)"
qemu="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
[ -n "$cc" ] || { echo "arm64 kernel check: no clang on PATH" >&2; exit 1; }
command -v aarch64-linux-gnu-ld >/dev/null || { echo "arm64 kernel check: aarch64-linux-gnu-ld missing (apt-get install gcc-aarch64-linux-gnu)" >&2; exit 1; }
[ -n "$qemu" ] || { echo "arm64 kernel check: qemu-aarch64 missing (apt-get install qemu-user-static)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$cc" --target=aarch64-linux-gnu -O2 -fno-math-errno -static -Wall -Werror -I Sources/CKernels/include -I Sources/CKernels \
    tools/arm64_kernel_check.c Sources/CKernels/*.c -o "$out/arm64_kernel_check" -lm -lpthread
"$qemu" "$out/arm64_kernel_check"

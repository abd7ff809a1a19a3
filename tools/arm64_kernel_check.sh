#!/usr/bin/env bash
# The C kernels' GEMM paths for arm64 (the NEON tile and the portable C) built for aarch64 and run
# under emulation (qemu-aarch64), each product checked against a double reference
# (tools/arm64_kernel_check.c). Checks values only: speed under emulation means nothing. Needs
# Debian's gcc-aarch64-linux-gnu and qemu-user-static (tools/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
cc=aarch64-linux-gnu-gcc
qemu="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
command -v "$cc" >/dev/null || { echo "arm64 kernel check: $cc missing (apt-get install gcc-aarch64-linux-gnu)" >&2; exit 1; }
[ -n "$qemu" ] || { echo "arm64 kernel check: qemu-aarch64 missing (apt-get install qemu-user-static)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$cc" -O2 -fno-math-errno -static -I Sources/CKernels/include -I Sources/CKernels \
    tools/arm64_kernel_check.c Sources/CKernels/*.c -o "$out/arm64_kernel_check" -lm -lpthread
"$qemu" "$out/arm64_kernel_check"

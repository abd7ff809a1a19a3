#!/usr/bin/env bash
# The C kernels compiled for arm64 (aarch64-linux-gnu), every file with -Wall -Werror: the
# portable paths are what arm64 runs (Apple Silicon, Graviton), and x86 builds alone do not see
# what only x86 headers bring in (immintrin.h includes stdlib.h, say). Compiles only; nothing
# runs. Needs clang (Swift's toolchain has it) and Debian's libc6-dev-arm64-cross headers.
set -euo pipefail
cd "$(dirname "$0")/.."
cc="$(command -v clang || true)"
[ -n "$cc" ] || { echo "arm64 compile check: no clang on PATH" >&2; exit 1; }
sysroot=/usr/aarch64-linux-gnu/include
[ -d "$sysroot" ] || { echo "arm64 compile check: $sysroot missing (apt-get install libc6-dev-arm64-cross)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for source in Sources/CKernels/*.c; do
    "$cc" --target=aarch64-linux-gnu -nostdinc -isystem "$("$cc" -print-resource-dir)/include" -isystem "$sysroot" \
        -O2 -fno-math-errno -Wall -Werror -I Sources/CKernels/include -I Sources/CKernels -c "$source" -o "$out/$(basename "$source").o"
done
echo "arm64 compile check: $(ls Sources/CKernels/*.c | wc -l) files compiled for aarch64-linux-gnu, no warnings"

#!/usr/bin/env bash
# The CPUID cap that `tools/bench.sh --isa avx2` runs the peers under (tools/cpuid_cap.c), checked on
# bnrun: under it this machine looks like an AVX2-only CPU (or, at `sse4`, one without AVX), and
# bnrun, with no BNKIT_MAX_ISA, chooses those kernels by itself (as on such a CPU) and gives the same
# bytes as when capped with BNKIT_MAX_ISA. Skipped, saying why, where there is nothing to hide or
# the CPU or kernel cannot fault on CPUID.
# Usage: tools/cpu_cap_check.sh [bin-dir]   (default .build/release: bnconv and bnrun)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-.build/release}"
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
if [ "$(uname -m)" != x86_64 ]; then echo "skipped: not x86-64"; exit 0; fi
if ! has avx512f; then echo "skipped: this CPU has no AVX-512 to hide"; exit 0; fi
if ! has cpuid_fault; then echo "skipped: this CPU or kernel cannot fault on CPUID (no cpuid_fault)"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -O2 -shared -fPIC -o "$work/cpuid_cap.so" tools/cpuid_cap.c
"$bin/bnconv" fold Fixtures/resnet_keras3.h5 -o "$work/model.bin" >/dev/null
images=Fixtures/mnist/t10k-images.idx3-ubyte.gz

# The kernels bnrun reports in its --bench line, under the environment given.
kernels() {
    env "$@" "$bin/bnrun" "$work/model.bin" "$images" --bench 1 --batch 256 --threads 1 \
        | sed -n 's/.*kernels \([a-z0-9]*\);.*/\1/p'
}
expect() {
    local want="$1" got
    shift
    got="$(kernels "$@")"
    if [ "$got" != "$want" ]; then echo "FAIL: with $* bnrun chose '$got' kernels, expected $want"; exit 1; fi
    echo "ok: $want kernels with ${*:-nothing capped}"
}
expect avx512
expect avx2 BNKIT_MAX_ISA=avx2
expect avx2 LD_PRELOAD="$work/cpuid_cap.so" BNKIT_CPUID_CAP=avx2
expect generic LD_PRELOAD="$work/cpuid_cap.so" BNKIT_CPUID_CAP=sse4
# An unknown level hides nothing.
expect avx512 LD_PRELOAD="$work/cpuid_cap.so" BNKIT_CPUID_CAP=avx3

# The same outputs, byte for byte, whichever way the AVX2 kernels were chosen.
n=0
for way in "BNKIT_MAX_ISA=avx2" "LD_PRELOAD=$work/cpuid_cap.so BNKIT_CPUID_CAP=avx2"; do
    # shellcheck disable=SC2086
    env $way "$bin/bnrun" "$work/model.bin" "$images" --threads 1 --format npy --output "$work/out-$((++n)).npy"
done
cmp "$work/out-1.npy" "$work/out-2.npy"
echo "ok: the same outputs under the CPUID cap as with BNKIT_MAX_ISA=avx2"

#!/usr/bin/env bash
# The test command: installs what it needs (apt packages; a Python venv with
# Keras 2 and Keras 3 for the interop check), then runs every test:
#   1. the C kernels compiled for arm64 (tools/arm64_compile_check.sh: compiles, runs nothing), and their GEMM paths
#      (the NEON tile, the portable C) and the other kernels built for arm64 and run under qemu against references
#      (tools/arm64_kernel_check.sh); the bench's CPUID cap checked on bnrun (tools/cpu_cap_check.sh: bnrun picks
#      AVX2 and portable kernels by itself); the Keras interop check (tools/interop.sh), the ONNX export check
#      (tools/onnx_export_check.py) and the batch-statistics check against Keras (tools/bn_statistics_reference.py check),
#   2. at the same time, the smallest keras.applications model of each family, and segmentation and 1-D networks,
#      folded and run against Keras (tools/applications_check.py),
#   3. with BNKIT_FUZZ_SECONDS=N, at the same time and at low priority, each fuzz target for N s in a sanitized debug
#      build (tools/fuzz.sh; a campaign: tools/fuzz.sh 60 or --runs 1000000). Not by default: building the sanitized
#      targets is four minutes of CPU, which took the command past 15 minutes on a slow 2-core machine; the Swift
#      tests replay the fuzzers' kept findings and seeds through the plain builds of every target,
#   4. then the Swift tests, in release (the end-to-end tests run real models over 10,000 images).
# The arm64 checks (about 25 s) and the CPUID cap check ran on their own between the build and the lanes until the
# fifty-third session; the first lane had about a minute less to do than the second (153 against 223 s, and 150
# against 193 s in a fresh-clone run of 864 s on a slow AMD Zen 3), so they now go at its start.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
# The venv's pip installs (mostly waiting on downloads and disk) run while the compiler keeps the cores busy.
logs="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
tools/venv.sh >"$logs/venv.log" 2>&1 &
venv=$!
swift build -c release --build-tests
if ! wait "$venv"; then echo "tools/venv.sh failed:"; cat "$logs/venv.log"; exit 1; fi
# The checks after the build (the first lane's arm64 and CPUID-cap checks, then the Python checks) run
# in two lanes at once, and the fuzzing if asked (its sanitized build first) in a third at low priority: one after another they left part of the second core idle (1108 → 1036 s
# on a slow AMD Zen 3, fuzzing included). Each lane's output is kept and shown in order when all
# end. A lane stops at its first failure; every lane is waited for.
kernel_and_interop_checks() {
  echo "== [${SECONDS} s] the C kernels compiled for arm64"
  tools/arm64_compile_check.sh
  echo "== [${SECONDS} s] the C kernels for arm64 (NEON and portable), run under qemu-aarch64"
  tools/arm64_kernel_check.sh
  echo "== [${SECONDS} s] the bench's CPUID cap (tools/cpuid_cap.c): bnrun chooses its AVX2 and portable kernels by itself under it"
  tools/cpu_cap_check.sh .build/release
  echo "== [${SECONDS} s] interop: the .h5 files bnconv writes, opened by Keras 2 and Keras 3"
  tools/interop.sh .build/release/bnconv
  echo "== [${SECONDS} s] ONNX export: bnconv convert to .onnx (BN kept, and folded), run by onnxruntime and OpenVINO, against Keras"
  TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/onnx_export_check.py --bnconv .build/release/bnconv 2>/dev/null | grep -v '^PASS'
  echo "== [${SECONDS} s] batch statistics: bnconv recalibrate and bnrun --bn-statistics batch against Keras (float64), live"
  for model in seed_mlp_keras2 small_cnn_keras3 resnet_keras2; do
    TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/bn_statistics_reference.py check --model "Fixtures/$model.h5" \
      --images Fixtures/mnist/t10k-images.idx3-ubyte.gz --limit 2000 \
      --bnconv .build/release/bnconv --bnrun .build/release/bnrun 2>/dev/null
  done
}
application_checks() {
  echo "== [${SECONDS} s] keras.applications: the smallest architecture of each family (each family by one producer, both producers), against Keras"
  TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/applications_check.py --producer keras3 \
    ConvNeXtTiny EfficientNetB0 MobileNetV3Small NASNetMobile ResNet50V2 Xception InceptionV3 \
    --bnconv .build/release/bnconv --bnrun .build/release/bnrun 2>/dev/null
  TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/applications_check.py --producer keras2 \
    DenseNet121 EfficientNetV2B0 InceptionResNetV2 MobileNet MobileNetV2 RegNetX002 RegNetY002 ResNetRS50 ResNet50 VGG16 \
    --bnconv .build/release/bnconv --bnrun .build/release/bnrun 2>/dev/null
  echo "== [${SECONDS} s] segmentation and 1-D networks as users write them (tools/deployed_architectures.py), against Keras"
  TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/applications_check.py --producer keras3 UNet XceptionUNet \
    --bnconv .build/release/bnconv --bnrun .build/release/bnrun 2>/dev/null
  TF_CPP_MIN_LOG_LEVEL=3 tools/.venv/bin/python tools/applications_check.py --producer keras2 --statistics calibrated --size 500 \
    FCN1D ResNet1D XceptionUNet --bnconv .build/release/bnconv --bnrun .build/release/bnrun 2>/dev/null
}
fuzzing() {
  echo "== [${SECONDS} s] building the sanitized fuzz targets (${BNKIT_FUZZ_CONFIGURATION:-debug})"
  BNKIT_FUZZ_CONFIGURATION="${BNKIT_FUZZ_CONFIGURATION:-debug}" tools/fuzz.sh --build-only
  echo "== [${SECONDS} s] fuzzing each reader for ${BNKIT_FUZZ_SECONDS} s (debug builds: the smoke run; tools/fuzz.sh alone fuzzes release builds)"
  BNKIT_FUZZ_PREBUILT=1 BNKIT_FUZZ_CONFIGURATION="${BNKIT_FUZZ_CONFIGURATION:-debug}" tools/fuzz.sh "${BNKIT_FUZZ_SECONDS}"
}
( kernel_and_interop_checks ) >"$logs/interop.log" 2>&1 &
interop=$!
( application_checks ) >"$logs/applications.log" 2>&1 &
applications=$!
lanes=(interop applications)
if [ -n "${BNKIT_FUZZ_SECONDS:-}" ]; then
  ( renice -n 10 -p "$BASHPID" >/dev/null; fuzzing ) >"$logs/fuzz.log" 2>&1 &
  fuzz=$!
  lanes+=(fuzz)
fi
failed=0
for lane in "${lanes[@]}"; do
  if ! wait "${!lane}"; then failed=1; echo "== the $lane lane FAILED:"; fi
  cat "$logs/$lane.log"
done
[ "$failed" = 0 ] || exit 1
echo "== [${SECONDS} s] swift tests"
swift test -c release --skip-build --disable-swift-testing

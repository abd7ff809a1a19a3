#!/usr/bin/env bash
# Fuzz the readers with libFuzzer + AddressSanitizer:
#   fuzz-native        the bnkit .bin reader (also with checksums repaired)
#   fuzz-idx           the IDX reader, plain and gzip
#   fuzz-keras-config  the Keras model-config parser and graph builder (JSON -> model)
#   fuzz-npy           the NumPy .npy reader (header, sizes, element conversion)
#   fuzz-image         PNG and JPEG decoding (libpng, libjpeg-turbo), then resizing and preprocessing
#   fuzz-onnx          the ONNX reader (protobuf limits, tensor sizes, import into the IR)
# Usage: tools/fuzz.sh [SECONDS-PER-TARGET | --runs N | --build-only]   (default 20 seconds each;
#        --build-only builds the sanitized targets and stops: the test command builds them in the
#        background while its other checks run)
# Seeds come from Fixtures/; corpora grow in .build-fuzz/corpus/<target>; crashes are
# written to .build-fuzz/artifacts/ and fail the run. Prints each target's execution count.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time="${1:-20}")
if [ "${1:-}" = "--runs" ]; then limit=(-runs="$2"); fi
build_only=0
if [ "${1:-}" = "--build-only" ]; then build_only=1; fi
root=.build-fuzz
# BNKIT_FUZZ_CONFIGURATION=debug builds the targets unoptimized (about 1 minute on 2 cores instead of 3:
# the test command's short smoke run); release (the default) fuzzes faster for long campaigns.
config="${BNKIT_FUZZ_CONFIGURATION:-release}"
# FUZZ_TARGETS="fuzz-idx fuzz-native" picks targets (default: all of them).
read -r -a targets <<< "${FUZZ_TARGETS:-fuzz-native fuzz-idx fuzz-keras-config fuzz-npy fuzz-image fuzz-onnx}"
# In release campaigns fuzz-image's C (CImageDecode: the buffers libpng and libjpeg write into,
# the conversions after) is instrumented too, in a build of its own: C flags for every target
# would rebuild every module the other targets use with them (minutes more). The test command's
# debug smoke run skips that second build (a second set of package checkouts and builds, on the
# two cores the rest of the test command uses).
instrument_c() { [ "$1" = fuzz-image ] && [ "$config" = release ]; }
scratch() { if instrument_c "$1"; then echo "$root-image"; else echo "$root"; fi; }
c_flags() { if instrument_c "$1"; then echo "-Xcc -fsanitize=fuzzer-no-link,address"; fi; }
# BNKIT_FUZZ_PREBUILT=1: the targets were just built by --build-only, and bnconv and fuzz-native by a release
# build (the test command's); each no-op build still takes seconds.
if [ "${BNKIT_FUZZ_PREBUILT:-0}" != 1 ]; then
  for target in fuzz-native fuzz-idx fuzz-keras-config fuzz-npy fuzz-image fuzz-onnx; do
    # shellcheck disable=SC2046
    swift build -c "$config" --scratch-path "$(scratch "$target")" --product "$target" \
      -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING $(c_flags "$target") >/dev/null
  done
fi
bin_of() { swift build -c "$config" --scratch-path "$(scratch "$1")" --show-bin-path; }
if [ "$build_only" = 1 ]; then exit 0; fi

# Seed corpora from the fixtures.
seeds="$root/seeds"
rm -rf "$seeds"; mkdir -p "$seeds"/{fuzz-native,fuzz-idx,fuzz-keras-config,fuzz-npy,fuzz-image,fuzz-onnx} "$root/artifacts"
cp Fixtures/npy/*.npy Fixtures/npy/expected.npz "$seeds/fuzz-npy/" && rm -f "$seeds/fuzz-npy/mnist"*
cp Fixtures/images/*.png Fixtures/images/*.jpg Fixtures/images/hostile/progressive.jpg "$seeds/fuzz-image/"
# Small ONNX files: the committed PyTorch exports and bnkit's own exports of the small fixtures.
for f in Fixtures/onnx/*.onnx; do [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200000 ] && cp "$f" "$seeds/fuzz-onnx/"; done
# (With BNKIT_FUZZ_PREBUILT=1 the test command's release build made bnconv and fuzz-native already.)
[ "${BNKIT_FUZZ_PREBUILT:-0}" = 1 ] || swift build -c release --product bnconv >/dev/null
for f in Fixtures/architectures/*_keras3.h5 Fixtures/seed_mlp_keras2.h5 Fixtures/small_cnn_keras2.h5; do
  "$(swift build -c release --show-bin-path)/bnconv" convert "$f" "$seeds/fuzz-onnx/$(basename "$f" .h5).onnx" >/dev/null
done
# Small .bin models of every op kind (fixture-sized files would only slow the fuzzer down).
[ "${BNKIT_FUZZ_PREBUILT:-0}" = 1 ] || swift build -c release --product fuzz-native >/dev/null
"$(swift build -c release --show-bin-path)/fuzz-native" --write-seeds "$seeds/fuzz-native"
cp Fixtures/mnist/t10k-labels.idx1-ubyte.gz "$seeds/fuzz-idx/"
python3 - "$seeds/fuzz-idx" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
def idx(code, dims, payload):
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(">" + "I" * len(dims), *dims) + payload
files = {
    "u8.idx": idx(0x08, [2, 3, 3], bytes(range(18))),
    "i8.idx": idx(0x09, [4], bytes([0x80, 0x7F, 0, 1])),
    "i16.idx": idx(0x0B, [2, 2], struct.pack(">4h", -1, 2, -300, 4)),
    "i32.idx": idx(0x0C, [3], struct.pack(">3i", -1, 2, 1 << 30)),
    "f32.idx": idx(0x0D, [2, 2], struct.pack(">4f", 0.5, -1, 3.25, 1e-30)),
    "f64.idx": idx(0x0E, [2], struct.pack(">2d", 0.5, -1e300)),
}
for name, data in files.items():
    open(f"{out}/{name}", "wb").write(data)
    open(f"{out}/{name}.gz", "wb").write(gzip.compress(data))
PY
tools/venv.sh
# Small .npz archives (stored and deflated) for fuzz-npy's zip path.
tools/.venv/bin/python - "$seeds/fuzz-npy" <<'PY'
import sys, numpy as np
x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
np.savez(f"{sys.argv[1]}/stored.npz", x=x)
np.savez_compressed(f"{sys.argv[1]}/deflated.npz", x=x.astype(np.uint8), y=np.arange(3))
PY
tools/.venv/bin/python - "$seeds/fuzz-keras-config" Fixtures/*.h5 Fixtures/architectures/*.h5 <<'PY'
import os, sys, h5py
for path in sys.argv[2:]:
    config = h5py.File(path, "r").attrs["model_config"]
    name = os.path.basename(path).replace(".h5", ".json")
    open(os.path.join(sys.argv[1], name), "w").write(config if isinstance(config, str) else config.decode())
PY

status=0
export LSAN_OPTIONS="suppressions=$PWD/tools/fuzz-lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for target in "${targets[@]}"; do
  corpus="$root/corpus/$target"
  mkdir -p "$corpus"
  log="$root/$target.log"
  if "$(bin_of "$target")/$target" "${limit[@]}" -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
      -artifact_prefix="$root/artifacts/$target-" "$corpus" "$seeds/$target" >"$log" 2>&1; then
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "$target: ${runs:-?} executions, no crash, hang or sanitizer report"
  else
    echo "$target: FAILED (see $log and $root/artifacts)"; tail -30 "$log"; status=1
  fi
done
exit $status

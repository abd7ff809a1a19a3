#!/usr/bin/env bash
# Builds the command-line tools (bnconv, bnrun and the bnkit-hdf5-reader helper) for use, in
# release, with the Swift runtime and Foundation linked statically, and prints the folder that
# holds them. Static linking saves loading and relocating a dozen shared libraries at every start
# (about 7 ms per process on an AMD Zen 4; docs/PERFORMANCE.md). They build in .build-cli, apart
# from the test build in .build (its flags differ, and sharing a folder would rebuild everything
# at each switch).
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release --scratch-path .build-cli)
[ "$(uname -s)" = Linux ] && flags+=(--static-swift-stdlib)
for product in bnconv bnrun bnkit-hdf5-reader; do
    swift build "${flags[@]}" --product "$product" >&2
done
swift build "${flags[@]}" --show-bin-path

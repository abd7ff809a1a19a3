#!/usr/bin/env bash
# The test command: installs what it needs (apt packages; a Python venv with
# Keras 2 and Keras 3 for the interop check), then runs every test.
# The Swift tests run in release: the end-to-end tests run real models over 10,000 images.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --build-tests
echo "== interop: the .h5 files bnconv writes, opened by Keras 2 and Keras 3"
tools/interop.sh .build/release/bnconv
echo "== swift tests"
swift test -c release --skip-build --disable-swift-testing

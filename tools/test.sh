#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test
# (release build: the end-to-end tests run real models over 10,000 images).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing

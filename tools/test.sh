#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build --build-tests
swift test --skip-build --disable-swift-testing

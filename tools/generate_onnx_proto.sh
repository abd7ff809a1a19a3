#!/usr/bin/env bash
# Regenerates Sources/ONNXProto/onnx.pb.swift (committed) from onnx.proto, the copy in the
# onnx pip package of tools/requirements.txt, with protoc (Debian's protobuf-compiler) and
# protoc-gen-swift built from apple/swift-protobuf at the version Package.swift uses
# (a first build of the plugin takes about 10 minutes on 2 cores; it is kept in
# .build-protoc-gen-swift, which git ignores).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.39.0
tools/venv.sh
proto="$(tools/.venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')"
if ! command -v protoc >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y protobuf-compiler
fi
scratch="$PWD/.build-protoc-gen-swift"
if [ ! -x "$scratch/release/protoc-gen-swift" ]; then
  rm -rf "$scratch/src"
  git clone --quiet --depth 1 --branch "$version" https://github.com/apple/swift-protobuf "$scratch/src"
  swift build -c release --product protoc-gen-swift --package-path "$scratch/src" --scratch-path "$scratch"
fi
protoc --plugin=protoc-gen-swift="$scratch/release/protoc-gen-swift" --swift_out=Sources/ONNXProto \
  --swift_opt=Visibility=Public -I "$(dirname "$proto")" "$proto"
echo "wrote Sources/ONNXProto/onnx.pb.swift from $proto"

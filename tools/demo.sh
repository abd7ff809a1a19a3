#!/usr/bin/env bash
# The main job on the embedded default: fold the Keras seed model in Fixtures/
# and run it on the 10,000 MNIST test images with labels, printing the accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
bin="$(tools/build-cli.sh)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
model="${1:-Fixtures/seed_mlp_keras3.h5}"
"$bin/bnconv" fold "$model" -o "$out/model.bin"
"$bin/bnrun" "$out/model.bin" Fixtures/mnist/t10k-images.idx3-ubyte.gz \
  --labels Fixtures/mnist/t10k-labels.idx1-ubyte.gz --format summary

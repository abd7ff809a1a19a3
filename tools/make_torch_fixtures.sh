#!/usr/bin/env bash
# PyTorch → ONNX fixtures (tools/make_torch_fixtures.py) in a venv of their own (torch is large;
# the test command does not need it): tools/.venv-torch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv-torch/bin/python" ]; then
  python3 -m venv "$here/.venv-torch"
  "$here/.venv-torch/bin/pip" install --quiet --upgrade pip
  "$here/.venv-torch/bin/pip" install --quiet torch torchvision onnx==1.23.2 numpy
fi
"$here/.venv-torch/bin/python" "$here/make_torch_fixtures.py" "$@"

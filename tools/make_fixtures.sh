#!/usr/bin/env bash
# Re-create the Keras fixtures in Fixtures/ with real Keras 2 (tf_keras) and Keras 3.
# Creates tools/.venv (ignored by git) from tools/requirements.txt on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/venv.sh"
mnist="${MNIST_DIR:-$here/../../shared/data/mnist}"
for producer in keras2 keras3; do
  TF_CPP_MIN_LOG_LEVEL=2 "$here/.venv/bin/python" "$here/make_fixtures.py" --producer "$producer" --mnist "$mnist" "$@"
done

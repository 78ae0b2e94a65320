#!/usr/bin/env bash
# Install (idempotent) and run the default test suite (fast tests; slow/GPU ones are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ -f .ci/apt-packages.txt ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # System packages for the browser test of `facegan serve` (skipped if they cannot be installed).
  missing=$(while read -r p; do [ -n "$p" ] && ! dpkg -s "$p" >/dev/null 2>&1 && echo "$p"; done < .ci/apt-packages.txt || true)
  if [ -n "$missing" ]; then
    (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) || echo "warning: could not install: $missing"
  fi
fi
exec "${PYTHON:-python3}" -m pytest -q "$@"

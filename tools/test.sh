#!/usr/bin/env bash
# Set up .venv with the test extras (idempotent), then run the test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" test
cd "$ROOT"
exec "$PY" -m pytest -q "$@"

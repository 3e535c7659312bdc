#!/usr/bin/env bash
# Set up .venv with the test extras (idempotent), then run the test suite. Extra arguments go to pytest.
#
#   tools/test.sh            the whole suite (what README and CI run)
#   tools/test.sh --fast     skip the tests marked slow (real CT, whole bundle runs, kill-and-resume): the edit loop
#   tools/test.sh --help     this text
set -euo pipefail
args=()
for arg in "$@"; do
    case "$arg" in
        --fast) args+=(-m "not slow") ;;
        -h|--help)
            sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            echo "Other arguments go to pytest, e.g. tools/test.sh --fast tests/networks -x"
            exit 0 ;;
        *) args+=("$arg") ;;
    esac
done
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" test
cd "$ROOT"
exec "$PY" -m pytest -q ${args[@]+"${args[@]}"}

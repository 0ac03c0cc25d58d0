#!/usr/bin/env bash
# Build the peer environment for the side-by-side active-learning benchmark:
# scripts/peers/.venv with scikit-learn 1.7, modAL, scikit-activeml and LightGBM
# (scripts/peers/requirements.txt), plus this project installed editable with --no-deps, so
# run_peers.py uses the very split / initial_set / evaluate / make_model of retrain_loop.
#
# Idempotent: a stamp in the venv records the hash of requirements.txt and pyproject.toml;
# when both are unchanged and the imports work, nothing is installed again.
#
#   bash scripts/peers/setup.sh            # PYTHON=python3.11 bash ... to choose the interpreter
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.peers-installed"

want="$(cat "$HERE/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $ROOT"

smoke() {
    "$PY" - <<'EOF'
import sklearn
assert sklearn.__version__.startswith("1.7."), f"scikit-learn {sklearn.__version__}, want 1.7.x"
import lightgbm, modAL.batch, modAL.uncertainty, skactiveml.pool, skactiveml.classifier  # noqa
import retrain_loop.models, retrain_loop.simulate  # noqa
EOF
}

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && smoke 2>/dev/null; then
    echo "peer venv up to date: $VENV"
    exit 0
fi

# A venv whose interpreter no longer runs (moved or deleted Python) is rebuilt from scratch.
if [ -e "$VENV" ] && ! "$PY" -c "pass" 2>/dev/null; then
    rm -rf "$VENV"
fi
if [ ! -x "$PY" ]; then
    echo "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"

# The offline mirror's extra indexes warn for every package they lack; that is noise here.
quiet_pip() {
    "$PY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

echo "installing scripts/peers/requirements.txt"
quiet_pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
echo "installing $ROOT (editable, --no-deps)"
quiet_pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"

smoke
echo "$want" > "$STAMP"
"$PY" - <<'EOF'
from importlib.metadata import version
print("peer venv ready:", ", ".join(f"{p} {version(p)}" for p in
      ("scikit-learn", "modAL-python", "scikit-activeml", "lightgbm", "numpy")))
EOF

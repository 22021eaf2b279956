# Sourced by run.sh and test.sh: make .venv and install a requirements file into it when it changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {  # $1: requirements file
  local req="$ROOT/$1" stamp
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  stamp="$VENV/.installed-$(basename "$1")"
  local want
  want="$(cat "$ROOT/requirements.txt" "$req" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing Python packages from $1 (the first time takes a few minutes)…" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -r "$req" >&2
    echo "$want" > "$stamp"
  fi
}

#!/usr/bin/env bash
# Install what the tests need (Python packages; Chromium, espeak-ng, sox and PostgreSQL from Debian) and run pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
# The storage tests also run against a PostgreSQL server they start themselves (tests/postgres.py).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} from Debian…" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
ensure_venv requirements-test.txt
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"

#!/usr/bin/env bash
# Install what the app needs (once) and start it; arguments go to run.py (see --help).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
cd "$ROOT"
exec "$VENV/bin/python" run.py "$@"

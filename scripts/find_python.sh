#!/usr/bin/env bash
# Prints the path of a Python >= 3.12 interpreter, or explains what is missing and exits 1.
# The project requires Python 3.12+ (pyproject.toml); .python-version (3.12) makes pyenv's python3 resolve to it.
set -u
candidates=("${PYTHON:-}" python3 python3.12 python3.13 python3.14 "$HOME/.pyenv/shims/python3")
for dir in "$HOME"/.pyenv/versions/3.1[2-9]*; do
  [ -x "$dir/bin/python3" ] && candidates+=("$dir/bin/python3")
done
for c in "${candidates[@]}"; do
  [ -n "$c" ] || continue
  command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
  if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    command -v "$c" 2>/dev/null || echo "$c"
    exit 0
  fi
done
cat >&2 <<'MSG'
error: Python 3.12 or newer is required (pyproject.toml: requires-python) and none was found.
  Tried: $PYTHON, python3, python3.12, python3.13, python3.14 and ~/.pyenv/versions/3.12+.
  Install one (e.g. `pyenv install 3.12` — .python-version selects it — or your OS's python3.12 package),
  or point PYTHON=/path/to/python3.12 at it, then run the make target again.
MSG
exit 1

#!/usr/bin/env bash
# Install agent-trader as a systemd service run by an unprivileged system user. Run as root from the project
# directory:
#
#   sudo scripts/install_service.sh [--prefix /opt/agent-trader] [--user agent-trader] [--env-file .env]
#                                   [--python /path/to/python3.12] [--unit-dir /etc/systemd/system] [--no-start]
#
# What it does, in order (each step is printed):
#   1. creates the system user and group (no login shell, home = the prefix) unless they exist;
#   2. copies the project's code and bundled data to the prefix (owned by root, readable by the user);
#   3. finds a Python >= 3.12 the user can run; when it cannot (e.g. pyenv's Python inside root's 0700 home),
#      copies that Python to PREFIX/python (pointing a shared-library build at its own copy of libpython, which
#      needs `patchelf`);
#   4. creates PREFIX/.venv from it and installs the project's runtime dependencies (no dev extras);
#   5. creates var/ (database, bar cache) and logs/ owned by the user, and installs .env (mode 0600, owned by the
#      user) from --env-file, or from .env.example when the prefix has none yet;
#   6. writes the units (agent-trader.service, agent-trader-health.service/.timer) with the prefix and user filled
#      in to the unit directory, and — when systemd runs and --no-start is not given — reloads systemd and enables
#      and starts them;
#   7. checks the installed command line as the user: `main.py status`.
# Re-running it upgrades the code and the venv in place and keeps var/, logs/ and an existing .env.
set -euo pipefail

PREFIX=/opt/agent-trader
SERVICE_USER=agent-trader
ENV_FILE=""
PYBIN="${PYTHON:-}"
UNIT_DIR=/etc/systemd/system
START=1
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }
step() { echo "==> $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --user) SERVICE_USER="${2:?--user needs a name}"; shift 2 ;;
    --env-file) ENV_FILE="${2:?--env-file needs a file}"; shift 2 ;;
    --python) PYBIN="${2:?--python needs an interpreter}"; shift 2 ;;
    --unit-dir) UNIT_DIR="${2:?--unit-dir needs a directory}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user, writes to $PREFIX and $UNIT_DIR)"
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path, got $PREFIX" ;; esac
PREFIX="${PREFIX%/}"
[ -z "$ENV_FILE" ] || [ -f "$ENV_FILE" ] || die "--env-file $ENV_FILE does not exist"
as_user() { runuser -u "$SERVICE_USER" -- "$@"; }

# 1. the user
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
  step "user $SERVICE_USER exists"
else
  step "creating system user $SERVICE_USER (home $PREFIX, no login shell)"
  useradd --system --user-group --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
GROUP="$(id -gn "$SERVICE_USER")"

# 2. the code
step "copying the project from $SRC to $PREFIX"
install -d -m 0755 -o root -g root "$PREFIX"
for item in agents config core data scripts strategies utils main.py pyproject.toml README.md .env.example .python-version; do
  [ -e "$SRC/$item" ] || continue
  rm -rf "${PREFIX:?}/$item"
  cp -R "$SRC/$item" "$PREFIX/$item"
done
find "$PREFIX" -path "$PREFIX/.venv" -prune -o -path "$PREFIX/python" -prune -o -path "$PREFIX/var" -prune \
  -o -path "$PREFIX/logs" -prune -o -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
chown -R root:root "$PREFIX"/agents "$PREFIX"/config "$PREFIX"/core "$PREFIX"/data "$PREFIX"/scripts \
  "$PREFIX"/strategies "$PREFIX"/utils "$PREFIX"/main.py "$PREFIX"/pyproject.toml
chmod -R u=rwX,go=rX "$PREFIX"/agents "$PREFIX"/config "$PREFIX"/core "$PREFIX"/data "$PREFIX"/scripts \
  "$PREFIX"/strategies "$PREFIX"/utils "$PREFIX"/main.py "$PREFIX"/pyproject.toml

# 3. an interpreter the user can run
if [ -z "$PYBIN" ]; then
  PYBIN="$(bash "$SRC/scripts/find_python.sh")" || exit 1
fi
"$PYBIN" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' \
  || die "$PYBIN is not Python 3.12 or newer"
check='import encodings, ssl, sqlite3, ctypes, decimal, sys; print(sys.version)'
if as_user "$PYBIN" -c "$check" >/dev/null 2>&1; then
  step "using $PYBIN ($("$PYBIN" --version)): $SERVICE_USER can run it"
else
  base="$("$PYBIN" -c 'import sys; print(sys.base_prefix)')"
  version="$("$PYBIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  copied="$PREFIX/python/bin/python$version"
  if [ -x "$copied" ] && [ "$(as_user "$copied" -c "$check" 2>/dev/null)" = "$("$PYBIN" -c "$check")" ]; then
    step "$SERVICE_USER cannot run $PYBIN (it lives in $base); its copy in $PREFIX/python is current"
  else
    step "$SERVICE_USER cannot run $PYBIN (it lives in $base): copying that Python to $PREFIX/python"
    rm -rf "$PREFIX/python.new"
    cp -R "$base" "$PREFIX/python.new"
    rm -rf "$PREFIX/python" "$PREFIX/.venv"
    mv "$PREFIX/python.new" "$PREFIX/python"
    chown -R root:root "$PREFIX/python"
    chmod -R u=rwX,go=rX "$PREFIX/python"
    if ! as_user "$copied" -c "$check" >/dev/null 2>&1; then
      # a --enable-shared build finds libpython through an absolute RUNPATH into the original (unreadable) place
      command -v patchelf >/dev/null 2>&1 \
        || die "the copied Python still loads libpython from $base; install patchelf (apt-get install patchelf) and run this again, or pass --python with a Python 3.12 that $SERVICE_USER can read"
      step "pointing $copied at its own libpython (patchelf --set-rpath \$ORIGIN/../lib)"
      patchelf --set-rpath '$ORIGIN/../lib' "$copied"
      for lib in "$PREFIX"/python/lib/libpython*.so*; do
        if [ -f "$lib" ] && [ ! -L "$lib" ]; then patchelf --set-rpath '$ORIGIN' "$lib"; fi
      done
      out="$(as_user "$copied" -c "$check" 2>&1)" || die "$SERVICE_USER still cannot run $copied: $out"
    fi
  fi
  PYBIN="$copied"
  step "using $PYBIN ($("$PYBIN" --version)), readable by $SERVICE_USER"
fi

# 4. the virtual environment (runtime dependencies only)
if [ -x "$PREFIX/.venv/bin/python" ] && [ "$(readlink -f "$PREFIX/.venv/bin/python")" != "$(readlink -f "$PYBIN")" ]; then
  rm -rf "$PREFIX/.venv"
fi
if [ ! -x "$PREFIX/.venv/bin/python" ]; then
  step "creating $PREFIX/.venv"
  "$PYBIN" -m venv "$PREFIX/.venv"
fi
step "installing the runtime dependencies into $PREFIX/.venv (pip progress below)"
if ! "$PREFIX/.venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-cache-dir "$PREFIX" 2>&1 \
    | { grep -E '^(Collecting|Successfully|ERROR|error)' || true; }; then
  die "pip install failed (run '$PREFIX/.venv/bin/python -m pip install $PREFIX' to see all of its output)"
fi
out="$(cd "$PREFIX" && .venv/bin/python -c 'import main' 2>&1)" || die "the installed project does not import: $out"
rm -rf "$PREFIX/build" "$PREFIX"/*.egg-info
"$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/main.py" "$PREFIX/agents" "$PREFIX/config" "$PREFIX/core" \
  "$PREFIX/strategies" "$PREFIX/utils" "$PREFIX/scripts" >/dev/null || true
chmod -R u=rwX,go=rX "$PREFIX/.venv"

# 5. writable directories and .env
step "creating $PREFIX/var and $PREFIX/logs (owned by $SERVICE_USER)"
install -d -m 0750 -o "$SERVICE_USER" -g "$GROUP" "$PREFIX/var" "$PREFIX/logs"
if [ -n "$ENV_FILE" ]; then
  step "installing $ENV_FILE as $PREFIX/.env (mode 0600, owner $SERVICE_USER)"
  install -m 0600 -o "$SERVICE_USER" -g "$GROUP" "$ENV_FILE" "$PREFIX/.env"
elif [ ! -e "$PREFIX/.env" ]; then
  step "no --env-file: installing .env.example as $PREFIX/.env (mode 0600); put ALPACA_API_KEY/ALPACA_SECRET_KEY in it"
  install -m 0600 -o "$SERVICE_USER" -g "$GROUP" "$SRC/.env.example" "$PREFIX/.env"
else
  step "keeping the existing $PREFIX/.env"
  chown "$SERVICE_USER:$GROUP" "$PREFIX/.env"
  chmod 0600 "$PREFIX/.env"
fi

# 6. the units
step "writing the units to $UNIT_DIR"
install -d -m 0755 "$UNIT_DIR"
for unit in agent-trader.service agent-trader-health.service agent-trader-health.timer; do
  sed -e "s|/opt/agent-trader|$PREFIX|g" -e "s|^User=agent-trader\$|User=$SERVICE_USER|" -e "s|^Group=agent-trader\$|Group=$GROUP|" \
    "$SRC/scripts/systemd/$unit" > "$UNIT_DIR/$unit.tmp"
  chmod 0644 "$UNIT_DIR/$unit.tmp"
  mv "$UNIT_DIR/$unit.tmp" "$UNIT_DIR/$unit"
done

# 7. the installed command line, as the user
step "checking: runuser -u $SERVICE_USER -- $PREFIX/.venv/bin/python main.py status (in $PREFIX)"
(cd "$PREFIX" && as_user "$PREFIX/.venv/bin/python" main.py status) || die "the installed daemon does not start as $SERVICE_USER"

if [ "$START" -eq 1 ] && [ -d /run/systemd/system ] && [ "$UNIT_DIR" = /etc/systemd/system ]; then
  step "enabling and starting agent-trader.service and agent-trader-health.timer"
  systemctl daemon-reload
  systemctl enable --now agent-trader.service agent-trader-health.timer
  echo "Follow it with: journalctl -u agent-trader -f"
else
  echo "Installed. Start it with: systemctl daemon-reload && systemctl enable --now agent-trader.service agent-trader-health.timer"
fi

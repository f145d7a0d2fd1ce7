# Sourced by scripts/test and .ci/run: make sure everything the tests need is here and
# running, then export where it is. Idempotent; quick when everything is already there.
#
#   CELERIAC_TEST_DATABASE_URL  server the tests create their databases on. When unset, a
#                               private server (trust auth, fsync off) is started from the
#                               machine's PostgreSQL binaries in $CELERIAC_TEST_PG_DIR.
#   CELERIAC_PG_BIN             PostgreSQL server binaries (installed with apt when missing)
#   CELERIAC_TEST_PYTHON        Python of the test venv (target/venv), with tests/requirements.txt
#   CELERIAC_TEST_CHROMIUM      Chromium and its WebDriver (chromium, chromium-driver from apt)
#   CELERIAC_TEST_CHROMEDRIVER  for the dashboard's browser test

set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'test-env: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else say "need root to run: $*"; return 1; fi
}

find_pg_bin() {
  local d
  if [ -n "${CELERIAC_PG_BIN:-}" ] && [ -x "$CELERIAC_PG_BIN/initdb" ]; then echo "$CELERIAC_PG_BIN"; return; fi
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
  if [ -x "$d/initdb" ]; then echo "$d"; return; fi
}

# 1. PostgreSQL server binaries (the dev command and some tests start private servers).
pg_bin=$(find_pg_bin)
if [ -z "$pg_bin" ]; then
  say "PostgreSQL server binaries not found; installing them with apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  pg_bin=$(find_pg_bin)
  [ -n "$pg_bin" ] || { say "installing PostgreSQL did not provide initdb"; exit 1; }
fi
export CELERIAC_PG_BIN=$pg_bin
export PATH="$pg_bin:$PATH"

# 2. A server for the tests' databases.
if [ -z "${CELERIAC_TEST_DATABASE_URL:-}" ]; then
  # Under /tmp (not the repo) so the server's user can reach it even when the checkout is not.
  dir=${CELERIAC_TEST_PG_DIR:-/tmp/celeriac-test-pg-$(id -u)-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)}
  port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  # CELERIAC_TEST_PG_PORT, else the first free port from 55432 (another checkout's test server
  # may hold 55432). A server already running in $dir keeps its port (postmaster.pid, line 4).
  port=${CELERIAC_TEST_PG_PORT:-}
  if [ -z "$port" ]; then
    for p in $(seq 55432 55531); do
      port_in_use "$p" || { port=$p; break; }
    done
    [ -n "$port" ] || { say "no free port in 55432-55531: set CELERIAC_TEST_PG_PORT"; exit 1; }
  fi

  run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { say "running as root needs a 'postgres' user to run PostgreSQL"; exit 1; }
    run=(runuser -u postgres --)
  fi
  # From / : the server's user may not be allowed into the current directory.
  as_pg() { (cd / && "${run[@]}" "$@"); }
  if ! as_pg "$pg_bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    if [ ! -f "$dir/PG_VERSION" ]; then
      say "creating a private test PostgreSQL in $dir"
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres: "$dir"
      chmod 700 "$dir"
      as_pg "$pg_bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
    fi
    say "starting the private test PostgreSQL on port $port"
    as_pg "$pg_bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null
  else
    port=$(sed -n 4p "$dir/postmaster.pid")
  fi

  export CELERIAC_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
fi

# 3. Python packages for the tests that run real Celery / Django, in a venv under target/.
#    Django 6 needs Python >= 3.12: the newest such interpreter found is used (CELERIAC_PYTHON,
#    python3.1x on PATH, or pyenv's versions).
find_python() {
  local c
  for c in "${CELERIAC_PYTHON:-}" python3.14 python3.13 python3.12 \
           $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 2>/dev/null | sort -rV) python3; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      command -v "$c" 2>/dev/null || echo "$c"; return
    fi
  done
}
venv="$repo/target/venv"
req="$repo/tests/requirements.txt"
if [ -s "$req" ]; then
  if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    say "the test venv's Python is older than 3.12; recreating it"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    py=$(find_python)
    if [ -z "$py" ]; then
      say "no Python >= 3.12 found (Django 6 needs it): set CELERIAC_PYTHON; Python tests will fail"
    elif ! "$py" -m venv "$venv" 2>/dev/null; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$py" -m venv "$venv"
    fi
  fi
  if [ -x "$venv/bin/python" ]; then
    stamp="$venv/.requirements.sha"
    # (pyproject.toml may not exist: its cat must not fail the pipeline under pipefail.)
    sum=$( { cat "$req"; cat "$repo"/python/pyproject.toml 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
      say "installing Python test packages into $venv"
      "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
      if [ -f "$repo/python/pyproject.toml" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo/python"
      fi
      echo "$sum" >"$stamp"
    fi
    export CELERIAC_TEST_PYTHON="$venv/bin/python"
  fi
fi

# 4. Chromium and chromedriver for the dashboard's headless browser test.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  say "installing chromium and chromium-driver with apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
CELERIAC_TEST_CHROMIUM=$(command -v chromium || true)
CELERIAC_TEST_CHROMEDRIVER=$(command -v chromedriver || true)
export CELERIAC_TEST_CHROMIUM CELERIAC_TEST_CHROMEDRIVER

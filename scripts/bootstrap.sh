#!/usr/bin/env bash
# One-time (idempotent) set-up for pgmq-jobs on Debian 12:
#   - system packages: PostgreSQL 15 server + pg_cron + plpython3 + pg_partman, pgbouncer
#   - .venv with `pip install -e '.[dev]'`
#   - node_modules with the Supabase CLI (npm package `supabase`, ships its binary)
# Steps already done are skipped (stamp files in .venv), so re-runs take seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(postgresql-15 postgresql-15-cron postgresql-plpython3-15 python3-jsonschema postgresql-15-partman pgbouncer chromium)
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# Hash of the inputs of a step, so that a changed pyproject/package-lock reruns it.
inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------- system packages
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# Tools the rest of this script needs, from apt only when the machine lacks them.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to install: ${missing[*]}"; exit 1; }
        SUDO=(sudo)
    fi
    log "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
else
    log "system packages present"
fi

# ---------------------------------------------------------------- python venv
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
py_hash="$(inputs_hash pyproject.toml)"
if [[ "$(cat "$VENV/.pgmq-jobs-pip" 2>/dev/null)" != "$py_hash" ]]; then
    log "pip install -e '.[dev]'"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$py_hash" >"$VENV/.pgmq-jobs-pip"
else
    log "python environment up to date"
fi

# ---------------------------------------------------------------- supabase CLI (npm)
npm_hash="$(inputs_hash package.json package-lock.json)"
if [[ "$(cat "$VENV/.pgmq-jobs-npm" 2>/dev/null)" != "$npm_hash" || ! -x node_modules/.bin/supabase ]]; then
    command -v npm >/dev/null || { log "npm (Node.js 18+) is required for the Supabase CLI"; exit 1; }
    # `npm install` (not `npm ci`): the lock file can only record the platform packages
    # (@supabase/cli-<os>-<arch>) that the registry served here, and `npm ci` rejects that.
    log "npm install (supabase CLI)"
    npm install --no-audit --no-fund --loglevel=error
    echo "$npm_hash" >"$VENV/.pgmq-jobs-npm"
else
    log "node_modules up to date"
fi

log "done"

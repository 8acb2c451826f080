#!/usr/bin/env bash
# Makes sure a virtualenv with Django exists for the Django interop tests, and prints the path
# of its python on stdout. Idempotent, quiet, and quick (and offline) when Django is already
# installed there.
#
#   bash scripts/django-env.sh            create .venv-django and install Django if missing
#
# The tests find the interpreter through TIDYSESSION_TEST_DJANGO_PYTHON (default: this
# virtualenv's python). Set TIDYSESSION_DJANGO_VENV to put the virtualenv elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TIDYSESSION_DJANGO_VENV:-.venv-django}"
SPEC='django>=5.2,<7'
# The Django store tests let Django read and write PostgreSQL itself.
PG_SPEC='psycopg[binary]>=3.1'
# Django's Argon2PasswordHasher needs it; the auth tests check passwords it hashed.
ARGON2_SPEC='argon2-cffi>=21.1'
# Django's MySQL/MariaDB backend through PyMySQL (pure Python; mysqlclient needs C headers).
MYSQL_SPEC='pymysql>=1.1'
PY="$VENV/bin/python"

log() { echo "django-env: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

has_django() {
    "$PY" - "$@" >/dev/null 2>&1 <<'PYEOF'
import django, sys
import psycopg  # Django's PostgreSQL driver, for the Django store tests
import argon2  # Django's Argon2PasswordHasher, for the Django password tests
import pymysql  # Django's MySQL backend, through PyMySQL
major, minor = django.VERSION[:2]
sys.exit(0 if (5, 2) <= (major, minor) < (7, 0) else 1)
PYEOF
}

if [ -x "$PY" ] && has_django; then
    echo "$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
    exit 0
fi

if [ ! -x "$PY" ]; then
    command -v python3 >/dev/null || die "python3 is missing; install Python 3.10 or newer"
    log "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

log "installing $SPEC $PG_SPEC $ARGON2_SPEC $MYSQL_SPEC into $VENV"
"$PY" -m pip install --quiet --disable-pip-version-check --no-input "$SPEC" "$PG_SPEC" "$ARGON2_SPEC" "$MYSQL_SPEC" >&2 ||
    die "pip could not install $SPEC $PG_SPEC $ARGON2_SPEC $MYSQL_SPEC into $VENV (offline?)"
has_django || die "Django is still not importable from $PY"
log "$("$PY" -c 'import django; print("Django", django.get_version())')"
echo "$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"

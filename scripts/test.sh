#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, doc examples.
# Everything runs with --all-features so one build serves every step.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL, MariaDB, Redis and the Redis Cluster the store tests talk to.
bash scripts/services.sh

# Real Django for the Django interop tests: a virtualenv in .venv-django, made (quietly) when
# missing. If it cannot be made (offline, no python3-venv), stop here rather than skip them.
if [ -z "${TIDYSESSION_TEST_DJANGO_PYTHON:-}" ]; then
    TIDYSESSION_TEST_DJANGO_PYTHON=$(bash scripts/django-env.sh) || {
        echo "test.sh: cannot set up Django for the interop tests (see the message above)" >&2
        exit 1
    }
fi
export TIDYSESSION_TEST_DJANGO_PYTHON

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo nextest run --workspace --all-features --no-fail-fast
cargo test --workspace --all-features --doc

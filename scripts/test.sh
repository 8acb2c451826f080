#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, doc examples.
# Everything runs with --all-features so one build serves every step.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL, MariaDB, Redis and the Redis Cluster the store tests talk to.
bash scripts/services.sh

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo nextest run --workspace --all-features --no-fail-fast
cargo test --workspace --all-features --doc

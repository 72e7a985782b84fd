#!/usr/bin/env bash
# The checks CI runs: formatting, lints, then the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo --version
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets -- -D warnings
fi
# The README's test command.
cargo test --workspace

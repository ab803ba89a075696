#!/usr/bin/env bash
# Build actionlint (the GitHub Actions workflow linter the tests run over docs/examples/)
# from the Go module proxy, cached under ~/.cache/mlform/actionlint/v<version>/bin.
# Prints that bin directory. Uses an `actionlint` already on PATH when its version matches.
set -euo pipefail
VERSION="${ACTIONLINT_VERSION:-1.7.12}"
CACHE="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/actionlint/v$VERSION"
BIN="$CACHE/bin"
if [ -x "$BIN/actionlint" ] && "$BIN/actionlint" --version 2>/dev/null | head -n1 | grep -qx "v$VERSION"; then
  echo "$BIN"; exit 0
fi
if command -v actionlint >/dev/null 2>&1 \
  && actionlint --version 2>/dev/null | head -n1 | grep -qx "v$VERSION"; then
  dirname "$(command -v actionlint)"; exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: building actionlint v$VERSION needs the Go toolchain (go) on PATH" >&2
  exit 1
fi
mkdir -p "$BIN"
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN" \
  go install "github.com/rhysd/actionlint/cmd/actionlint@v$VERSION" >&2
"$BIN/actionlint" --version >&2
echo "$BIN"

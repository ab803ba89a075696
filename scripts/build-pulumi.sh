#!/usr/bin/env bash
# Build the Pulumi CLI (and the Python dynamic-provider launcher) from the Go module proxy,
# cached under ~/.cache/mlform/pulumi/<version>/bin. Prints that bin directory.
# Uses an existing `pulumi` on PATH when its version matches.
set -euo pipefail
VERSION="${PULUMI_VERSION:-3.259.0}"
CACHE="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/pulumi/v$VERSION"
BIN="$CACHE/bin"
if [ -x "$BIN/pulumi" ] && "$BIN/pulumi" version 2>/dev/null | grep -q "v$VERSION"; then
  echo "$BIN"; exit 0
fi
if command -v pulumi >/dev/null 2>&1 && pulumi version 2>/dev/null | grep -q "^v$VERSION$"; then
  dirname "$(command -v pulumi)"; exit 0
fi
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > go.mod <<EOM
module mlform.local/pulumi-build

go 1.24

require (
	github.com/pulumi/pulumi/pkg/v3 v$VERSION
	github.com/pulumi/pulumi/sdk/v3 v$VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOM
cat > tools.go <<'EOM'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
EOM
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod tidy >&2
go build -trimpath -tags osusergo,grpcnotrace \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION" \
  -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
sdkdir="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
"$BIN/pulumi" version >&2
echo "$BIN"

#!/usr/bin/env bash
# Build the Pulumi CLI (and the Python dynamic-provider launcher) from the Go module proxy,
# cached under ~/.cache/mlform/pulumi/<version>/bin ($MLFORM_TOOLCHAIN_CACHE moves
# ~/.cache/mlform). Prints that bin directory; everything else goes to stderr.
# Uses an existing `pulumi` on PATH when its version matches.
#
# Safe to interrupt and to run concurrently: the build happens in a staging directory that
# is renamed into place only once both binaries are there and `pulumi version` answers, and a
# lock (flock) makes a second set-up wait for the first instead of building again.
set -euo pipefail
VERSION="${PULUMI_VERSION:-3.259.0}"
GO_MIN=1.25.11   # the go directive of github.com/pulumi/pulumi/{pkg,sdk}/v3 at v3.259.0
ROOT="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/pulumi"
CACHE="$ROOT/v$VERSION"
BIN="$CACHE/bin"
COLD_MINUTES="${MLFORM_PULUMI_COLD_MINUTES:-5-15}"   # measured: 6-9 min niced, 2 busy cores

cached() {
  [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-resource-pulumi-python" ] \
    && [ "$("$BIN/pulumi" version 2>/dev/null)" = "v$VERSION" ]
}
if cached; then
  echo "$BIN"; exit 0
fi
# A pulumi on PATH counts only with the launcher beside it or on PATH (official builds ship it).
if command -v pulumi >/dev/null 2>&1 && [ "$(pulumi version 2>/dev/null)" = "v$VERSION" ]; then
  on_path="$(dirname "$(command -v pulumi)")"
  if [ -x "$on_path/pulumi-resource-pulumi-python" ] \
    || command -v pulumi-resource-pulumi-python >/dev/null 2>&1; then
    echo "$on_path"; exit 0
  fi
fi

WHAT="the Pulumi CLI"
INSTEAD="put a pulumi v$VERSION (with pulumi-resource-pulumi-python beside it) on PATH: it is used as is"
# shellcheck source=scripts/lib/build-stage.sh
source "$(dirname "$0")/lib/build-stage.sh"
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
  -o "$stage/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
sdkdir="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" \
  "$stage/bin/pulumi-resource-pulumi-python"
built="$("$stage/bin/pulumi" version 2>/dev/null || true)"
if [ "$built" != "v$VERSION" ]; then
  echo "error: the freshly built pulumi reports '${built:-nothing}', expected v$VERSION" >&2
  exit 1
fi
# Swap the finished directory into place: readers see the old one, nothing, or the new one.
if [ -e "$CACHE" ]; then
  rm -rf "$CACHE.old"
  mv "$CACHE" "$CACHE.old"
fi
mv "$stage" "$CACHE"
stage=""
rm -rf "$CACHE.old"
echo "mlform: built the Pulumi CLI $built into $BIN" >&2
echo "$BIN"

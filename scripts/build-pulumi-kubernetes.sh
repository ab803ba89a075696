#!/usr/bin/env bash
# Build pulumi-resource-kubernetes from the Go module proxy, cached under
# ~/.cache/mlform/pulumi-kubernetes/v<version>/bin ($MLFORM_TOOLCHAIN_CACHE moves
# ~/.cache/mlform). Prints that bin directory; everything else goes to stderr.
# MLFORM_PULUMI_KUBERNETES_BIN=<dir> uses a provider binary already there instead.
#
# Safe to interrupt and to run concurrently: the build happens in a staging directory that is
# renamed into place (binary and stamp together) only when it is complete, and a lock (flock)
# makes a second set-up wait for the first instead of building again.
#
# The module proxy reachable here refuses github.com/pulumi/pulumi-kubernetes/provider/v4 at the
# release commits tried (4.23.0-4.34.0) and the root module at v4.x.y+incompatible; the one
# version found that it serves is the commit f47bc2d6f199 of 2026-01-15, one day before the
# 4.25.0 release (sdk/v4.25.0 is commit 144dd813d53e). It is built against pulumi pkg/sdk
# v3.216.0 (with v3.259.0 it does not compile: codegen/schema's PackageSpec.Provider became a
# pointer) and stamped as 4.25.0, to pair with the Python SDK pulumi-kubernetes==4.25.0.
set -euo pipefail
VERSION="${PULUMI_KUBERNETES_VERSION:-4.25.0}"
PROVIDER_PSEUDO="${PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION:-v4.0.0-20260115033456-f47bc2d6f199}"
SDK_V4="${PULUMI_KUBERNETES_SDK_MODULE_VERSION:-v4.25.0}"
PULUMI_GO="${PULUMI_KUBERNETES_PULUMI_GO_VERSION:-v3.216.0}"
GO_MIN=1.24.7   # the go directive of provider/v4 at that commit and of pulumi pkg/v3 v3.216.0
ROOT="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/pulumi-kubernetes"
CACHE="$ROOT/v$VERSION"
BIN="$CACHE/bin"
EXE=pulumi-resource-kubernetes
COLD_MINUTES="${MLFORM_PULUMI_KUBERNETES_COLD_MINUTES:-20-30}"   # measured: 18 min niced, 2 busy cores

STAMP="$CACHE/BUILT"   # "<version> <provider module version>", written after a successful build
# The provider has no --version flag, and -trimpath drops -ldflags from its build info, so a
# binary's version cannot be read back: trust only our own stamp, or an explicit override.
if [ -n "${MLFORM_PULUMI_KUBERNETES_BIN:-}" ] && [ -x "$MLFORM_PULUMI_KUBERNETES_BIN/$EXE" ]; then
  echo "$MLFORM_PULUMI_KUBERNETES_BIN"; exit 0
fi
cached() {
  [ -x "$BIN/$EXE" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION $PROVIDER_PSEUDO" ]
}
if cached; then
  echo "$BIN"; exit 0
fi

WHAT="the Pulumi kubernetes provider plugin"
INSTEAD="set MLFORM_PULUMI_KUBERNETES_BIN=<a directory holding $EXE v$VERSION>"
# shellcheck source=scripts/lib/build-stage.sh
source "$(dirname "$0")/lib/build-stage.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# The checksum database has no entry for these two (the proxy answers 404 for them).
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi/pulumi-kubernetes,github.com/pulumi/cloud-ready-checks"

cd "$work"
src="$(go mod download -json "github.com/pulumi/pulumi-kubernetes/provider/v4@$PROVIDER_PSEUDO" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$src" ] && [ -d "$src" ] || { echo "could not download provider/v4@$PROVIDER_PSEUDO" >&2; exit 1; }
# The module cache is read-only and the embedded JSON files are not in the module: copy it.
cp -r "$src" provider
chmod -R u+w provider
mkdir gen
cat > go.mod <<EOM
module mlform.local/pulumi-kubernetes-build

go 1.24

require (
	github.com/pulumi/pulumi-kubernetes/provider/v4 $PROVIDER_PSEUDO
	github.com/pulumi/pulumi-kubernetes/sdk/v4 $SDK_V4
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_GO
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_GO
)

replace github.com/pulumi/pulumi-kubernetes/provider/v4 => ./provider
EOM
cat > tools.go <<'EOM'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"
EOM
# Equivalent of upstream's generate.go: schema-embed.json (version stamped, minified through
# schema.PackageSpec) and a minified terraform-mapping-embed.json.
cat > gen/main.go <<'EOM'
package main

import (
	"encoding/json"
	"log"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

func minify(src, dst string, v interface{}, edit func()) {
	raw, err := os.ReadFile(src)
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		log.Fatalf("%s: %v", src, err)
	}
	edit()
	out, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		log.Fatal(err)
	}
}

func main() {
	dir, version := os.Args[1], os.Args[2]
	var spec schema.PackageSpec
	minify(filepath.Join(dir, "schema.json"), filepath.Join(dir, "schema-embed.json"), &spec,
		func() { spec.Version = version })
	var mapping interface{}
	minify(filepath.Join(dir, "terraform-mapping.json"), filepath.Join(dir, "terraform-mapping-embed.json"), &mapping,
		func() {})
}
EOM
go mod tidy >&2
go build -o genbin ./gen >&2
./genbin provider/cmd/pulumi-resource-kubernetes "$VERSION" >&2
go build -trimpath \
  -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=v$VERSION" \
  -o "$stage/bin/$EXE" github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes >&2
[ -x "$stage/bin/$EXE" ] || { echo "error: go build produced no $EXE" >&2; exit 1; }
echo "$VERSION $PROVIDER_PSEUDO" > "$stage/BUILT"
# Swap the finished directory into place: readers see the old one, nothing, or the new one.
if [ -e "$CACHE" ]; then
  rm -rf "$CACHE.old"
  mv "$CACHE" "$CACHE.old"
fi
mv "$stage" "$CACHE"
stage=""
rm -rf "$CACHE.old"
echo "mlform: built $EXE v$VERSION into $BIN" >&2
echo "$BIN"

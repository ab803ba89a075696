#!/usr/bin/env bash
# Build etcd (for the Kubernetes control plane the integration tests start) from the Go module
# proxy, cached under ~/.cache/mlform/etcd/v<version>/bin ($MLFORM_TOOLCHAIN_CACHE moves
# ~/.cache/mlform). Prints that bin directory; everything else goes to stderr.
# Uses an existing `etcd` of exactly that version on PATH or in $KUBEBUILDER_ASSETS (envtest's
# binary directory) instead. Debian's etcd (3.4.x) is too old for Kubernetes and is not used.
#
# Safe to interrupt and to run concurrently: the build happens in a staging directory that is
# renamed into place only once `etcd --version` answers the pinned version, and a lock (flock)
# makes a second set-up wait for the first instead of building again.
#
# go.etcd.io/etcd/server/v3 holds etcd's main package (server/main.go); its go.mod replaces its
# sibling modules with relative paths, which Go ignores outside the main module, so a wrapper
# module that requires server/v3 and the siblings at the same published version builds it. The
# repository's root module go.etcd.io/etcd/v3 (etcdctl, etcdutl) is not served at v3.7.x.
set -euo pipefail
VERSION="${ETCD_VERSION:-3.7.3}"   # Kubernetes v1.37 is built and tested against etcd 3.7.0
GO_MIN=1.26.0   # the go directive of go.etcd.io/etcd/server/v3 at v3.7.3
ROOT="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/etcd"
CACHE="$ROOT/v$VERSION"
BIN="$CACHE/bin"
COLD_MINUTES="${MLFORM_ETCD_COLD_MINUTES:-2-4}"   # measured: 2 min 10 s niced, 2 busy cores

# `etcd --version` prints "etcd Version: 3.7.3" on its first line.
version_of() { "$1" --version 2>/dev/null | sed -n 's/^etcd Version: //p' | head -n1; }
cached() { [ -x "$BIN/etcd" ] && [ "$(version_of "$BIN/etcd")" = "$VERSION" ]; }
if cached; then
  echo "$BIN"; exit 0
fi
for dir in ${KUBEBUILDER_ASSETS:+"$KUBEBUILDER_ASSETS"} \
  "$(dirname "$(command -v etcd 2>/dev/null || echo /nonexistent/etcd)")"; do
  if [ -x "$dir/etcd" ] && [ "$(version_of "$dir/etcd")" = "$VERSION" ]; then
    echo "$dir"; exit 0
  fi
done

# MLFORM_TOOLCHAIN_NO_BUILD=1 (the tests' fixture): report that it is missing instead of building.
if [ "${MLFORM_TOOLCHAIN_NO_BUILD:-}" = 1 ]; then
  echo "etcd v$VERSION is not built (not in $CACHE nor on PATH); run bash $0" >&2
  exit 3
fi
WHAT="etcd"
INSTEAD="put an etcd v$VERSION on PATH: it is used as is"
# shellcheck source=scripts/lib/build-stage.sh
source "$(dirname "$0")/lib/build-stage.sh"
cd "$work"
cat > go.mod <<EOM
module mlform.local/etcd-build

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 v$VERSION
	go.etcd.io/etcd/client/pkg/v3 v$VERSION
	go.etcd.io/etcd/client/v3 v$VERSION
	go.etcd.io/etcd/pkg/v3 v$VERSION
	go.etcd.io/etcd/server/v3 v$VERSION
)
EOM
cat > tools.go <<'EOM'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOM
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod tidy >&2
go build -trimpath -ldflags "-s -w" -o "$stage/bin/etcd" go.etcd.io/etcd/server/v3 >&2
built="$(version_of "$stage/bin/etcd" || true)"
if [ "$built" != "$VERSION" ]; then
  echo "error: the freshly built etcd reports '${built:-nothing}', expected $VERSION" >&2
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
echo "mlform: built etcd v$built into $BIN" >&2
echo "$BIN"

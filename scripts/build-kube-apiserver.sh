#!/usr/bin/env bash
# Build kube-apiserver (for the Kubernetes control plane the integration tests start) from the
# Go module proxy, cached under ~/.cache/mlform/kube-apiserver/v<version>/bin
# ($MLFORM_TOOLCHAIN_CACHE moves ~/.cache/mlform). Prints that bin directory; everything else
# goes to stderr. Uses an existing `kube-apiserver` of exactly that version on PATH or in
# $KUBEBUILDER_ASSETS (envtest's binary directory) instead.
#
# Safe to interrupt and to run concurrently: the build happens in a staging directory that is
# renamed into place only once `kube-apiserver --version` answers the pinned version, and a lock
# (flock) makes a second set-up wait for the first instead of building again.
#
# k8s.io/kubernetes requires its ~30 staging modules (k8s.io/api, k8s.io/apiserver, ...) at
# v0.0.0 and replaces them with ./staging/src/...; replaces only count in the main module, so
# a wrapper module requires k8s.io/kubernetes and replaces each staging module named in
# upstream's own replace block with its published v0.<minor>.<patch>. The version is stamped
# with -ldflags -X as upstream's hack/lib/version.sh does (otherwise it reports v0.0.0).
set -euo pipefail
VERSION="${KUBE_APISERVER_VERSION:-1.37.2}"
GO_MIN=1.26.0   # the go directive of k8s.io/kubernetes at v1.37.2
ROOT="${MLFORM_TOOLCHAIN_CACHE:-$HOME/.cache/mlform}/kube-apiserver"
CACHE="$ROOT/v$VERSION"
BIN="$CACHE/bin"
COLD_MINUTES="${MLFORM_KUBE_APISERVER_COLD_MINUTES:-7-15}"   # measured: 7.5 min niced, 2 busy cores

# `kube-apiserver --version` prints "Kubernetes v1.37.2".
version_of() { "$1" --version 2>/dev/null | sed -n 's/^Kubernetes v//p' | head -n1; }
cached() { [ -x "$BIN/kube-apiserver" ] && [ "$(version_of "$BIN/kube-apiserver")" = "$VERSION" ]; }
if cached; then
  echo "$BIN"; exit 0
fi
for dir in ${KUBEBUILDER_ASSETS:+"$KUBEBUILDER_ASSETS"} \
  "$(dirname "$(command -v kube-apiserver 2>/dev/null || echo /nonexistent/kube-apiserver)")"; do
  if [ -x "$dir/kube-apiserver" ] && [ "$(version_of "$dir/kube-apiserver")" = "$VERSION" ]; then
    echo "$dir"; exit 0
  fi
done

# MLFORM_TOOLCHAIN_NO_BUILD=1 (the tests' fixture): report that it is missing instead of building.
if [ "${MLFORM_TOOLCHAIN_NO_BUILD:-}" = 1 ]; then
  echo "kube-apiserver v$VERSION is not built (not in $CACHE nor on PATH); run bash $0" >&2
  exit 3
fi
WHAT="kube-apiserver"
INSTEAD="put a kube-apiserver v$VERSION on PATH: it is used as is"
# shellcheck source=scripts/lib/build-stage.sh
source "$(dirname "$0")/lib/build-stage.sh"
cd "$work"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
upstream_mod="$(go mod download -json "k8s.io/kubernetes@v$VERSION" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
if [ -z "$upstream_mod" ] || [ ! -f "$upstream_mod" ]; then
  echo "error: could not download k8s.io/kubernetes@v$VERSION" >&2; exit 1
fi
# "k8s.io/api => ./staging/src/k8s.io/api" becomes "k8s.io/api => k8s.io/api v0.37.2".
staging_version="v0.${VERSION#*.}"
replaces="$(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*$|\t\1 => \1 '"$staging_version"'|p' \
  "$upstream_mod")"
[ -n "$replaces" ] || { echo "error: no staging replaces found in $upstream_mod" >&2; exit 1; }
cat > go.mod <<EOM
module mlform.local/kube-apiserver-build

go $GO_MIN

godebug default=go${GO_MIN%.*}

require k8s.io/kubernetes v$VERSION

replace (
$replaces
)
EOM
cat > tools.go <<'EOM'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOM
go mod tidy >&2
major="${VERSION%%.*}"
minor="${VERSION#*.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
go build -trimpath -ldflags "$ldflags" -o "$stage/bin/kube-apiserver" \
  k8s.io/kubernetes/cmd/kube-apiserver >&2
built="$(version_of "$stage/bin/kube-apiserver" || true)"
if [ "$built" != "$VERSION" ]; then
  echo "error: the freshly built kube-apiserver reports '${built:-nothing}', expected $VERSION" >&2
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
echo "mlform: built kube-apiserver v$built into $BIN" >&2
echo "$BIN"

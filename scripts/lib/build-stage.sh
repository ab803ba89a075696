# Sourced by scripts/build-pulumi*.sh after they set ROOT, VERSION, BIN, CACHE, WHAT (what is
# built, for messages), GO_MIN, INSTEAD (what a user can do instead of building),
# COLD_MINUTES and a `cached` function (true when $BIN is complete).
# Checks Go, serialises concurrent set-ups with a lock, returns a build another set-up
# finished while we waited, and stages the new build in "$stage" (renamed into place by the
# caller, so an interrupted build never leaves a half binary that looks valid). "$work" is a
# scratch dir.
need_go() {
  echo "error: $WHAT v$VERSION is not in $CACHE and building it needs Go >= $GO_MIN ($1)." \
    "Install Go >= $GO_MIN and re-run, or $INSTEAD." >&2
  exit 1
}
command -v go >/dev/null 2>&1 || need_go "no go on PATH"
go_version="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)"
go_version="${go_version#go}"
if [ -z "$go_version" ] \
  || [ "$(printf '%s\n%s\n' "$GO_MIN" "$go_version" | sort -V | head -n1)" != "$GO_MIN" ]; then
  need_go "found go ${go_version:-of unknown version} at $(command -v go)"
fi

mkdir -p "$ROOT"
work=""
stage=""
cleanup() {
  [ -z "$work" ] || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
  [ -z "$stage" ] || rm -rf "$stage"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if command -v flock >/dev/null 2>&1; then
  exec 9>"$ROOT/.v$VERSION.lock"
  if ! flock -n 9; then
    echo "mlform: another set-up is building $WHAT v$VERSION; waiting for it" >&2
    flock 9
  fi
  if cached; then   # built by the set-up we waited for
    echo "$BIN"; exit 0
  fi
  rm -rf "$ROOT/.v$VERSION.build."*   # left by an interrupted build (we hold the lock)
else
  echo "mlform: flock not found; building without a lock" >&2
fi

# shellcheck source=scripts/lib/free-space.sh
source "$(dirname "${BASH_SOURCE[0]}")/free-space.sh"
require_free_gib "$(GOTOOLCHAIN=local go env GOCACHE)" "${MLFORM_BUILD_FREE_GIB:-5}" \
  "building $WHAT v$VERSION (Go's build cache)"
echo "mlform: building $WHAT v$VERSION from the Go module proxy" \
  "(first run only, ~$COLD_MINUTES min) into $CACHE" >&2
stage="$(mktemp -d "$ROOT/.v$VERSION.build.XXXXXX")"
chmod 0755 "$stage"
mkdir "$stage/bin"
work="$(mktemp -d)"

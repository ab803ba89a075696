# Sourced by scripts/setup.sh and scripts/lib/build-stage.sh: refuse to start a large write
# (a virtualenv with PyTorch's CUDA wheels, a cold Go build) on a disk that cannot hold it,
# with a message that says how much is needed and where, instead of failing half-way with
# "No space left on device" and leaving partial files behind.
#   require_free_gib DIR GIB WHAT
# MLFORM_SKIP_SPACE_CHECK=1 skips the check (for a filesystem whose free space df misreports).
require_free_gib() {
  local dir="$1" need="$2" what="$3" probe avail_kib avail_gib
  [ "${MLFORM_SKIP_SPACE_CHECK:-}" = 1 ] && return 0
  probe="$dir"
  while [ ! -e "$probe" ] && [ "$probe" != / ]; do probe="$(dirname "$probe")"; done
  avail_kib="$(df -Pk "$probe" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  [ -n "$avail_kib" ] || return 0   # no df answer: let the write itself decide
  avail_gib=$(( avail_kib / 1048576 ))
  if [ "$avail_gib" -lt "$need" ]; then
    echo "error: $what needs about $need GiB free under $probe; $avail_gib GiB are free." \
      "Free some space (old clones' .venv directories, 'python3 -m pip cache purge'," \
      "'go clean -cache') and run again; MLFORM_SKIP_SPACE_CHECK=1 skips this check." >&2
    exit 1
  fi
}

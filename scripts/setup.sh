#!/usr/bin/env bash
# Set up a development environment: a virtualenv in .venv with mlform (editable) and
# its dev tools, then the Pulumi CLI the engine runs (scripts/build-pulumi.sh: a matching
# `pulumi` on PATH, the cache under ~/.cache/mlform, or a build from the Go module proxy).
#   --kubernetes (or MLFORM_SETUP_KUBERNETES=1) also ensures the kubernetes provider plugin
#   (scripts/build-pulumi-kubernetes.sh), needed by the kubernetes and render targets, and
#   etcd + kube-apiserver (scripts/build-etcd.sh, build-kube-apiserver.sh) for their tests.
# Idempotent and fast when nothing changed (venv keyed by pyproject.toml, builds by version).
# pip's download cache lives under ~/.cache/pip, so a warm machine installs offline-fast.
set -euo pipefail
cd "$(dirname "$0")/.."

kubernetes="${MLFORM_SETUP_KUBERNETES:-0}"
for arg in "$@"; do
  case "$arg" in
    --kubernetes) kubernetes=1 ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (usage: scripts/setup.sh [--kubernetes])" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: mlform needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.mlform-setup-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # shellcheck source=scripts/lib/free-space.sh
  source scripts/lib/free-space.sh
  # A first install unpacks PyTorch's CUDA wheels (~7 GiB installed, more while unpacking).
  if ! compgen -G ".venv/lib/python3*/site-packages/torch" >/dev/null; then
    require_free_gib .venv 10 "installing mlform's Python dependencies into .venv"
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev,torch]"
  rm -f .venv/.mlform-setup-*
  touch "$stamp"
fi

# The build scripts print their bin directory on stdout (not wanted here) and, before a cold
# build, a one-line note on stderr.
bash scripts/build-pulumi.sh >/dev/null
if [ "$kubernetes" = 1 ]; then
  bash scripts/build-pulumi-kubernetes.sh >/dev/null
  # A real control plane for the Kubernetes tests: etcd and kube-apiserver, built from the
  # Go module proxy (cached by version like the Pulumi builds; docs/toolchain.md).
  bash scripts/build-etcd.sh >/dev/null
  bash scripts/build-kube-apiserver.sh >/dev/null
fi

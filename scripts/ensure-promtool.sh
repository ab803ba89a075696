#!/usr/bin/env bash
# Make sure `promtool` (Prometheus's rule checker) is on PATH: the monitor tests validate the
# alerting rules mlform renders with `promtool check rules` and `promtool test rules`.
# Uses one already installed; otherwise, as root on Debian/Ubuntu, installs Debian's
# `prometheus` package (which ships promtool; its service is not started in a container).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "note: installing Debian's prometheus package for promtool (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  command -v promtool >/dev/null 2>&1 && exit 0
fi
echo "warning: promtool is not installed (apt-get install prometheus); the Prometheus rule tests fail under CI and skip elsewhere" >&2

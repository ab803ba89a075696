#!/usr/bin/env bash
# Set up, then lint (ruff), type-check (mypy) and run the whole test suite (pytest).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --kubernetes
# promtool validates the Prometheus alert rules of monitors (Debian's prometheus package).
bash scripts/ensure-promtool.sh
# actionlint checks the example GitHub workflow (built from the Go module proxy, cached).
PATH="$(bash scripts/build-actionlint.sh):$PATH"
export PATH
.venv/bin/ruff check src tests benchmarks scripts ml
.venv/bin/ruff format --check src tests benchmarks scripts ml
.venv/bin/mypy
set +e
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (exit 5); the suite must never be empty" >&2
  exit 1
fi
exit "$rc"

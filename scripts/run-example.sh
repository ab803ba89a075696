#!/usr/bin/env bash
# The main job: set up, then plan and apply the example system (configs/ + stacks/dev.yaml)
# on the local target (trains and registers both models), and show what was recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
STACK="${STACK:-dev}"
set -x
mlform validate -s "$STACK"
mlform plan -s "$STACK" --out ".mlform/$STACK.mlplan"
mlform apply ".mlform/$STACK.mlplan"
mlform state list -s "$STACK"
mlform models show model.diagnosis -s "$STACK"
mlform plan -s "$STACK"

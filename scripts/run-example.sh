#!/usr/bin/env bash
# The main job: set up, then plan and apply the example system (configs/ + stacks/dev.yaml)
# on the local target — trains and registers both models, serves model.diagnosis behind
# the router on http://127.0.0.1:8080 — shows what was recorded, and sends a sample
# prediction request (docs/examples/diagnosis-request.json: two biopsies from the test split)
# and runs the latency monitor on it; the drift and latency monitors keep running on their
# schedules.
# The servers keep running, like any applied infrastructure: `mlform destroy -s dev` stops them.
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
mlform rollout status -s "$STACK"
ENDPOINT="$(mlform state show deployment.diagnosis-api -s "$STACK" \
  | python -c 'import json, sys; print(json.load(sys.stdin)["outputs"]["endpoint"])')"
python - "$ENDPOINT" docs/examples/diagnosis-request.json <<'PY'
import json, sys, urllib.request
url, body = sys.argv[1], open(sys.argv[2], "rb").read()
print(f"POST {url}")
request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as response:
    print(json.dumps(json.load(response), indent=2))
PY
# The monitors run on their schedules (a scheduler process each); run one now and show all.
mlform monitor run diagnosis-latency -s "$STACK"
mlform monitor status -s "$STACK"
mlform plan -s "$STACK"

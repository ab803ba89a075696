"""Rollouts end to end on the local target, under steady load from a separate process.

The real CLI applies a copy of the example system: model v1 is trained and served
behind the router; then a config change trains v2, which a canary walks through its
steps to promotion; then a deliberately slow v3 breaks the latency analysis and is
rolled back automatically. The load generator counts every request: none may fail.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration

SUPPORT = Path(__file__).parent / "support"
E2E_STACK = """\
# @package _global_
models:
  diagnosis:
    estimator:
      n_estimators: 40
  diagnosis_torch:
    trainer:
      epochs: 3
deployments:
  diagnosis-api:
    replicas: 1
    autoscaling: null
    strategy:
      steps:
        - {weight: 20, pause: 4s}
        - {weight: 50, pause: 4s}
        - {weight: 100}
      analysis:
        interval: 2s
        failure_limit: 2
        metrics:
          - {name: success_rate, threshold: ">= 0.99"}
          - {name: latency_p99_ms, threshold: "<= 150"}
"""
V2 = ("models.diagnosis.estimator.n_estimators=60",)
V3 = (
    "models.diagnosis.estimator.n_estimators=60",
    "models.diagnosis.estimator._target_=ml.slow_model.SlowForest",
    "+models.diagnosis.estimator.delay_s=0.25",
)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _json(project: Path, *args: str) -> Any:
    return json.loads(_ok(run_cli(project, *args, "-s", "e2e", "--json")))


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read()), response.headers["X-Mlform-Upstream"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, pulumi_toolchain: Any) -> Iterator[Path]:
    root = copy_example(tmp_path_factory.mktemp("rollouts"))
    shutil.copy(SUPPORT / "slow_model.py", root / "ml" / "slow_model.py")
    (root / "stacks" / "e2e.yaml").write_text(E2E_STACK)
    yield root
    run_cli(root, "destroy", "-s", "e2e", "-y", *V3)


def test_canary_promotes_v2_then_rolls_back_a_slow_v3_without_failed_requests(
    project: Path, tmp_path: Path
) -> None:
    out = _ok(run_cli(project, "apply", "-s", "e2e", "-y"))
    assert "deployment.diagnosis-api" in out
    shown = _ok(run_cli(project, "state", "show", "deployment.diagnosis-api", "-s", "e2e"))
    outputs = json.loads(shown)["outputs"]
    endpoint, base = outputs["endpoint"], outputs["url"]
    status, meta = _get(f"{base}/v2/models/diagnosis-api")
    assert status == 200 and meta["versions"] == ["1"]
    width = meta["inputs"][0]["shape"][1]
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, width], "datatype": "FP32", "data": [0.5] * width}
        ]
    }
    status, answer, upstream = _post(endpoint, body)
    assert status == 200 and upstream == "diagnosis-v1"
    assert answer["outputs"][0]["name"] == "predict"

    body_file, summary_file = tmp_path / "body.json", tmp_path / "summary.json"
    body_file.write_text(json.dumps(body))
    load = subprocess.Popen(
        [
            sys.executable,
            str(SUPPORT / "loadgen.py"),
            endpoint,
            str(body_file),
            str(summary_file),
            "--rate",
            "40",
        ]
    )
    try:
        time.sleep(2)
        # v2: the plan explains the retrain, the rollout and its steps.
        plan = _ok(run_cli(project, "plan", "-s", "e2e", *V2))
        assert "model.diagnosis  retrain" in plan
        assert "deployment.diagnosis-api  roll out" in plan
        assert "steps: canary 20% (pause 4s) → 50% (pause 4s) → 100%" in plan
        out = _ok(run_cli(project, "apply", "-s", "e2e", "-y", *V2))
        status_v2 = _json(project, "rollout", "status", "diagnosis-api")[0]
        assert status_v2["phase"] == "healthy", status_v2
        assert [s["ref"] for s in status_v2["stable"]] == ["model.diagnosis@v2"]
        weights = [c["weight"] for c in status_v2["checks"]]
        assert 20 in weights and 50 in weights  # analysed at both steps
        assert all(c["passed"] for c in status_v2["checks"])

        # v3 answers correctly but slowly: the latency analysis fails and rolls it back.
        result = run_cli(project, "apply", "-s", "e2e", "-y", *V3)
        assert result.returncode == 1, result.stdout + result.stderr
        text = result.stdout + result.stderr
        assert "aborted" in text and "latency_p99_ms" in text, text
        assert "traffic is back on model.diagnosis@v2" in text
        status_v3 = _json(project, "rollout", "status", "diagnosis-api")[0]
        assert status_v3["phase"] == "aborted"
        assert status_v3["canary"]["ref"] == "model.diagnosis@v3"
        assert [s["ref"] for s in status_v3["stable"]] == ["model.diagnosis@v2"]
        assert status_v3["failed_checks"] == 2
        # The rejected rollout is recorded: the next plan does not retry it by itself.
        plan = json.loads(_ok(run_cli(project, "plan", "-s", "e2e", "--format", "json", *V3)))
        actions = {c["address"]: c["action"] for c in plan["changes"]}
        assert actions["deployment.diagnosis-api"] == "no-op"
        time.sleep(2)
    finally:
        load.send_signal(signal.SIGTERM)
        load.wait(timeout=60)
    summary = json.loads(summary_file.read_text())
    assert summary["sent"] > 200
    assert summary["failed"] == 0, summary["failures"]
    assert summary["ok"] == summary["sent"]
    assert {"diagnosis-v1", "diagnosis-v2", "diagnosis-v3"} <= set(summary["upstreams"])
    # After the rollback every answer came from v2 again.
    tail = [upstream for _, upstream in summary["timeline"][-40:]]
    assert set(tail) == {"diagnosis-v2"}
    status, _ = _get(f"{base}/v2/health/ready")
    assert status == 200


BLUE_GREEN = (
    "~deployments.diagnosis-api.strategy",
    "+deployments.diagnosis-api.strategy.type=blue_green",
    "+deployments.diagnosis-api.strategy.scale_down_delay=1s",
)


@pytest.fixture()
def fresh(tmp_path: Path, pulumi_toolchain: Any) -> Iterator[Path]:
    root = copy_example(tmp_path / "project")
    (root / "stacks" / "e2e.yaml").write_text(E2E_STACK)
    yield root
    run_cli(root, "destroy", "-s", "e2e", "-y", *BLUE_GREEN)


def test_blue_green_previews_until_rollout_promote(fresh: Path) -> None:
    _ok(run_cli(fresh, "apply", "-s", "e2e", "-y", *BLUE_GREEN))
    endpoint = json.loads(
        _ok(run_cli(fresh, "state", "show", "deployment.diagnosis-api", "-s", "e2e"))
    )["outputs"]["endpoint"]
    body = json.loads(
        (Path(__file__).parents[2] / "docs/examples/diagnosis-request.json").read_text()
    )
    _ok(run_cli(fresh, "apply", "-s", "e2e", "-y", *BLUE_GREEN, *V2))
    status = _json(fresh, "rollout", "status", "diagnosis-api")[0]
    assert status["phase"] == "paused" and status["canary"]["ref"] == "model.diagnosis@v2"
    # Clients still get v1; the preview header reaches v2.
    assert _post(endpoint, body)[2] == "diagnosis-v1"
    preview = urllib.request.Request(
        endpoint,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Mlform-Preview": "true"},
    )
    with urllib.request.urlopen(preview, timeout=10) as response:
        assert response.headers["X-Mlform-Upstream"] == "diagnosis-v2"
    # The plan shows the pending rollout; apply again leaves it paused.
    plan = _ok(run_cli(fresh, "plan", "-s", "e2e", *BLUE_GREEN, *V2))
    assert "deployment.diagnosis-api  roll out" in plan
    assert "the rollout of model.diagnosis@v2 is paused" in plan
    out = _ok(run_cli(fresh, "rollout", "promote", "diagnosis-api", "-s", "e2e"))
    assert "model.diagnosis@v2 is stable" in out
    assert _post(endpoint, body)[2] == "diagnosis-v2"
    status = _json(fresh, "rollout", "status", "diagnosis-api")[0]
    assert status["phase"] == "healthy"
    assert [s["ref"] for s in status["stable"]] == ["model.diagnosis@v2"]
    plan = json.loads(
        _ok(run_cli(fresh, "plan", "-s", "e2e", "--format", "json", *BLUE_GREEN, *V2))
    )
    actions = {c["address"]: c["action"] for c in plan["changes"]}
    assert actions["deployment.diagnosis-api"] == "no-op"
    history = _ok(run_cli(fresh, "state", "history", "-s", "e2e"))
    assert "rollout promote" in history
    # Nothing left to promote: a clear error, not a traceback.
    again = run_cli(fresh, "rollout", "promote", "diagnosis-api", "-s", "e2e")
    assert again.returncode == 1 and "has no rollout in progress" in again.stderr + again.stdout
    assert "Traceback" not in again.stderr


def test_an_interrupted_canary_resumes_where_it_stopped(fresh: Path) -> None:
    _ok(run_cli(fresh, "apply", "-s", "e2e", "-y"))
    endpoint = json.loads(
        _ok(run_cli(fresh, "state", "show", "deployment.diagnosis-api", "-s", "e2e"))
    )["outputs"]["endpoint"]
    body_file = Path(__file__).parents[2] / "docs/examples/diagnosis-request.json"
    summary_file = fresh / "summary.json"
    load = subprocess.Popen(
        [
            sys.executable,
            str(SUPPORT / "loadgen.py"),
            endpoint,
            str(body_file),
            str(summary_file),
            "--rate",
            "30",
        ]
    )
    try:
        apply = subprocess.Popen(
            [sys.executable, "-m", "mlform", "-C", str(fresh), "apply", "-s", "e2e", "-y", *V2],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        journal = (
            fresh / ".mlform" / "stacks" / "e2e" / "rollouts" / "deployment.diagnosis-api.json"
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = json.loads(journal.read_text()) if journal.exists() else {}
            if record.get("phase") == "progressing" and record.get("weight") == 50:
                break
            time.sleep(0.2)
        else:
            recorded = journal.read_text() if journal.exists() else "no journal"
            pytest.fail(f"the canary never reached 50%: {recorded}")
        apply.send_signal(signal.SIGKILL)
        apply.wait(timeout=30)
        plan = _ok(run_cli(fresh, "plan", "-s", "e2e", *V2))
        assert "deployment.diagnosis-api  roll out" in plan
        assert "the last apply started on this object but did not finish" in plan
        status = _json(fresh, "rollout", "status", "diagnosis-api")[0]
        assert status["phase"] == "progressing" and status["weight"] == 50
        out = _ok(run_cli(fresh, "apply", "-s", "e2e", "-y", *V2))
        assert "deployment.diagnosis-api" in out
        status = _json(fresh, "rollout", "status", "diagnosis-api")[0]
        assert status["phase"] == "healthy"
        messages = [e["message"] for e in status["events"]]
        assert any("resuming the rollout of model.diagnosis@v2 at step 1" in m for m in messages)
        # Resumed at 50%: no second pass through the 20% step.
        step_starts = [m for m in messages if m.startswith("step 1/3")]
        assert len(step_starts) == 1
        time.sleep(1)
    finally:
        load.send_signal(signal.SIGTERM)
        load.wait(timeout=60)
    summary = json.loads(summary_file.read_text())
    assert summary["failed"] == 0, summary["failures"]
    assert {"diagnosis-v1", "diagnosis-v2"} <= set(summary["upstreams"])

"""Monitors end to end on the local target: drift, alerts, retrain in the plan, rollback.

The real CLI applies a copy of the example system with its monitors. Traffic drawn from
the training data passes the drift monitor; shifted traffic breaches it: the webhook
receiver (a real HTTP server on loopback) gets one alert, and the next plan retrains the
model for that reason. A latency monitor with ``on_breach: rollback``, run by its
scheduler process every 2 s, returns the deployment to v1 when a slow v2 is serving.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration

SUPPORT = Path(__file__).parent / "support"
STACK = """\
# @package _global_
models:
  diagnosis:
    estimator:
      n_estimators: 30
  diagnosis_torch:
    trainer:
      epochs: 2
deployments:
  diagnosis-api:
    replicas: 1
    autoscaling: null
    strategy:
      steps:
        - {weight: 50, pause: 1s}
        - {weight: 100}
      analysis:
        interval: 1s
        metrics:
          - {name: request_rate, threshold: ">= 0"}
monitors:
  diagnosis-drift:
    window: {size: 150}
    schedule: {every: 1h}
    alerts:
      - {sink: log}
      - {sink: webhook, url: "WEBHOOK", headers: {Authorization: "Bearer t0ken"}}
  diagnosis-latency:
    quantile: 0.9
    threshold: 100ms
    window: {duration: 5m}
    schedule: {every: 2s}
  diagnosis-predictions:
    deployment: diagnosis-api
    type: prediction_drift
    window: {size: 150}
    schedule: {every: 1h}
  diagnosis-accuracy:
    deployment: diagnosis-api
    type: performance
    metric: accuracy
    threshold: 0.8
    labels: {}
    window: {size: 300}
    schedule: {every: 1h}
"""
SLOW_V2 = (
    "models.diagnosis.estimator._target_=ml.slow_model.SlowForest",
    "+models.diagnosis.estimator.delay_s=0.25",
)
SHIFTED = ("mean_radius", "mean_texture", "worst_radius", "worst_concave_points")


class Receiver:
    """A webhook receiver that keeps every alert it is sent (deduplicated by key)."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        self.attempts = 0
        self.authorization: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                receiver.authorization.add(self.headers.get("Authorization", ""))
                receiver.alerts.setdefault(self.headers["Idempotency-Key"], json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, pulumi_toolchain: Any, receiver: Receiver
) -> Iterator[Path]:
    root = copy_example(tmp_path_factory.mktemp("monitors"))
    shutil.copy(SUPPORT / "slow_model.py", root / "ml" / "slow_model.py")
    (root / "stacks" / "mon.yaml").write_text(STACK.replace("WEBHOOK", receiver.url))
    yield root
    run_cli(root, "destroy", "-s", "mon", "-y", *SLOW_V2)


def _ok(result: subprocess.CompletedProcess[str], *codes: int) -> str:
    assert result.returncode in (codes or (0,)), result.stdout + result.stderr
    return result.stdout


def _cli_json(project: Path, *args: str) -> Any:
    return json.loads(_ok(run_cli(project, *args, "-s", "mon", "--json")))


def _endpoint(project: Path) -> tuple[str, list[str]]:
    shown = json.loads(
        _ok(run_cli(project, "state", "show", "deployment.diagnosis-api", "-s", "mon"))
    )
    url = shown["outputs"]["url"]
    with urllib.request.urlopen(f"{url}/v2/models/diagnosis-api", timeout=10) as response:
        metadata = json.loads(response.read())
    return shown["outputs"]["endpoint"], list(metadata["parameters"]["feature_names"])


def _training_rows(project: Path, names: list[str], *, with_target: bool = False) -> Any:
    found = sorted(
        (project / ".mlform").glob("stacks/mon/artifacts/features/diagnosis/*/train.parquet")
    )
    assert found, "the feature set's training split was not written"
    table = pq.read_table(found[-1]).to_pandas()
    rows = table[names].to_numpy(dtype=np.float64)
    return (rows, table["target"].to_numpy()) if with_target else rows


def _labels(prefix: str, targets: np.ndarray, batch: int = 10) -> list[dict[str, Any]]:
    """One label list per request sent by :func:`_send` (ids ``prefix-<first row>``)."""
    return [
        {"id": f"{prefix}-{start}", "label": [int(t) for t in targets[start : start + batch]]}
        for start in range(0, len(targets), batch)
    ]


def _wait_for_labels(project: Path, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    pattern = "stacks/mon/predictions/diagnosis-api/*/labels-*.jsonl"
    lines = 0
    while time.monotonic() < deadline:
        lines = sum(len(p.read_text().splitlines()) for p in (project / ".mlform").glob(pattern))
        if lines >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {lines} of {count} labels logged after {timeout}s")


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _send(endpoint: str, rows: np.ndarray, *, batch: int = 10, label: str = "req") -> list[str]:
    """POST the rows in requests of ``batch`` rows; the upstreams that answered."""
    upstreams = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        body = {
            "id": f"{label}-{start}",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(chunk.shape),
                    "datatype": "FP64",
                    "data": chunk.ravel().tolist(),
                }
            ],
        }
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            upstreams.append(response.headers["X-Mlform-Upstream"])
    return upstreams


def _wait_for_log_lines(project: Path, rows: int, timeout: float = 15.0) -> None:
    """The servers write their prediction logs every 0.5 s: wait until ``rows`` are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = 0
        for path in (project / ".mlform").glob(
            "stacks/mon/predictions/diagnosis-api/*/predictions-*.jsonl"
        ):
            for line in path.read_text().splitlines():
                if line.strip():
                    total += len(json.loads(line)["inputs"])
        if total >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {total} of {rows} logged rows after {timeout}s")


def test_drift_breach_alerts_once_and_the_next_plan_retrains(
    project: Path, receiver: Receiver
) -> None:
    _ok(run_cli(project, "apply", "-s", "mon", "-y"))
    status = _cli_json(project, "monitor", "status")
    assert {m["name"]: m["applied"] for m in status} == {
        "diagnosis-accuracy": True,
        "diagnosis-drift": True,
        "diagnosis-latency": True,
        "diagnosis-predictions": True,
    }
    endpoint, names = _endpoint(project)
    rng = np.random.default_rng(7)
    train, targets = _training_rows(project, names, with_target=True)

    # Traffic drawn from the training data: no drift.
    same = rng.choice(len(train), 150, replace=False)
    _send(endpoint, train[same], label="same")
    _wait_for_log_lines(project, 150)
    run = _cli_json(project, "monitor", "run", "diagnosis-drift")
    assert run["status"] == "ok", run
    assert run["rows"] == 150
    assert {c["method"] for c in run["details"]["columns"]} == {"ks"}  # 455 reference rows
    assert not receiver.alerts
    predictions = _cli_json(project, "monitor", "run", "diagnosis-predictions")
    assert predictions["status"] == "ok", predictions
    (column,) = predictions["details"]["columns"]
    assert (column["column"], column["method"]) == ("prediction", "ztest")  # two classes

    # Labels arrive later, posted to the deployment: the model is right on its training rows.
    labels_url = endpoint.removesuffix("/infer") + "/labels"
    posted = _post(labels_url, {"labels": _labels("same", targets[same])})
    assert posted == {"accepted": 15}
    _wait_for_labels(project, 15)
    accuracy = _cli_json(project, "monitor", "run", "diagnosis-accuracy")
    assert accuracy["status"] == "ok", accuracy
    assert accuracy["details"]["labelled_rows"] == 150 and accuracy["value"] > 0.9

    # The same patients measured 40 % larger: the size columns drift.
    picked = rng.choice(len(train), 150, replace=False)
    shifted = train[picked].copy()
    for column in SHIFTED:
        shifted[:, names.index(column)] *= 1.4
    _send(endpoint, shifted, label="shifted")
    _wait_for_log_lines(project, 300)
    result = run_cli(project, "monitor", "run", "diagnosis-drift", "-s", "mon", "--json")
    breach = json.loads(_ok(result, 3))
    assert breach["status"] == "breached", breach
    assert breach["action"]["action"] == "retrain"
    drifted = {c["column"] for c in breach["details"]["columns"] if c["drifted"]}
    assert drifted >= {"mean_radius", "worst_radius"}, breach["details"]["columns"]

    # Wrong labels for the shifted requests: accuracy over the window's 300 rows drops.
    _post(labels_url, {"labels": _labels("shifted", 1 - targets[picked])})
    _wait_for_labels(project, 30)
    worse = json.loads(
        _ok(run_cli(project, "monitor", "run", "diagnosis-accuracy", "-s", "mon", "--json"), 3)
    )
    assert worse["status"] == "breached" and worse["details"]["labelled_rows"] == 300
    assert (
        worse["reason"].startswith("accuracy 0.")
        and "< 0.8 on 300 labelled rows" in worse["reason"]
    )

    # One alert reached the webhook, with the configured header and the breach reason.
    assert len(receiver.alerts) == 1, receiver.alerts
    (alert,) = receiver.alerts.values()
    assert alert["status"] == "firing" and alert["monitor"] == "diagnosis-drift"
    assert alert["summary"].startswith(f"monitor.diagnosis-drift breached at {breach['time']}")
    assert receiver.authorization == {"Bearer t0ken"}

    # Still breached at the next run: no second alert.
    _ok(run_cli(project, "monitor", "run", "diagnosis-drift", "-s", "mon"), 3)
    assert len(receiver.alerts) == 1 and receiver.attempts == 1

    # The plan retrains the model for that reason, and rolls the new version out.
    plan = json.loads(_ok(run_cli(project, "plan", "-s", "mon", "--format", "json")))
    changes = {c["address"]: c for c in plan["changes"]}
    model = changes["model.diagnosis"]
    assert model["action"] == "retrain", model
    (reason,) = model["reasons"]
    assert reason["kind"] == "monitor-breached"
    assert re.fullmatch(
        r"monitor\.diagnosis-drift breached at \S+Z \(ks p=\S+ <=? 0\.05 on column \w+; "
        r"\d of 4 columns drifted\)",
        reason["message"],
    ), reason["message"]
    assert changes["deployment.diagnosis-api"]["action"] == "rollout"
    human = _ok(run_cli(project, "plan", "-s", "mon"))
    assert "monitor.diagnosis-drift breached at" in human
    history = _cli_json(project, "monitor", "history", "diagnosis-drift")
    assert [r["status"] for r in history][-3:] == ["ok", "breached", "breached"]


def test_latency_breach_rolls_a_slow_version_back(project: Path) -> None:
    # Runs after the drift test (same module): v1 is serving.
    _ok(run_cli(project, "apply", "-s", "mon", "-y", *SLOW_V2))
    rollout = _cli_json(project, "rollout", "status")[0]
    assert [s["ref"] for s in rollout["stable"]] == ["model.diagnosis@v2"], rollout
    endpoint, names = _endpoint(project)
    rows = _training_rows(project, names)[:1]
    upstreams = _send(endpoint, np.repeat(rows, 8, axis=0), batch=1, label="slow")
    assert set(upstreams) == {"diagnosis-v2"}

    # The latency scheduler (every 2 s) sees p90 > 100 ms and rolls back to v1.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rollout = _cli_json(project, "rollout", "status")[0]
        if [s["ref"] for s in rollout["stable"]] == ["model.diagnosis@v1"]:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not rolled back within 60 s: {rollout}")
    assert rollout["phase"] == "aborted"
    assert "rolled back from model.diagnosis@v2 to model.diagnosis@v1" in rollout["message"]
    assert "monitor.diagnosis-latency breached at" in rollout["message"]
    assert set(_send(endpoint, rows, label="after")) == {"diagnosis-v1"}

    runs = _cli_json(project, "monitor", "history", "diagnosis-latency")
    breached = [r for r in runs if r["status"] == "breached"]
    assert breached, runs
    assert breached[0]["action"]["action"] == "rollback"
    assert "rolled back from model.diagnosis@v2" in breached[0]["action"]["outcome"]
    assert "monitor rollback" in _ok(run_cli(project, "state", "history", "-s", "mon"))
    # The rolled-back version is not rolled out again by the next plan.
    plan = json.loads(_ok(run_cli(project, "plan", "-s", "mon", "--format", "json", *SLOW_V2)))
    deployment = next(c for c in plan["changes"] if c["address"] == "deployment.diagnosis-api")
    assert deployment["action"] == "no-op", deployment


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("monitors.diagnosis-drift.columns=[mean_radius,sex]",),
            "monitors.diagnosis-drift.columns.1 names 'sex', which model.diagnosis does not take",
        ),
        (
            ("monitors.diagnosis-drift.method=psi", "+monitors.diagnosis-drift.threshold=-0.2"),
            "invalid value for monitors.diagnosis-drift.threshold",
        ),
        (
            (
                "~monitors.diagnosis-drift.window.size",
                "+monitors.diagnosis-drift.window.duration=30d",
            ),
            "monitors.diagnosis-drift.window.duration (30d) is longer than the prediction log "
            "keeps",
        ),
        (
            ("+deployments.diagnosis-api.prediction_log.enabled=false",),
            "monitors.diagnosis-drift reads the prediction log, which "
            "deployments.diagnosis-api.prediction_log.enabled turns off",
        ),
    ],
)
def test_bad_monitor_config_is_a_diagnostic_at_validate(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    project = copy_example(tmp_path)
    result = run_cli(project, "validate", *overrides)
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join((result.stdout + result.stderr).split())
    assert message in text, text
    assert "Traceback" not in text

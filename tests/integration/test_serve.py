"""``mlform serve`` as a real subprocess over a real registry.

A scikit-learn pipeline (StandardScaler + LogisticRegression) is trained on the breast-cancer
data with the sklearn trainer, stored and registered as ``model.cancer@v1`` (accepted,
champion); ``@v2`` is registered rejected. ``model.slow`` is an estimator defined in a
module of a project directory (``servemodels.py``) whose ``predict_proba`` sleeps, to test
graceful draining. Servers listen on ``--port 0`` and announce the port on stderr; every
test waits for ``GET /v2/health/ready`` and kills its server in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer

from mlform import api, workspace
from mlform.registry.queries import registry_for
from mlform.registry.versions import ModelRegistry
from mlform.training.sklearn_trainer import load_sklearn, train_sklearn
from mlform.training.types import Split, TrainingData

pytestmark = pytest.mark.integration


def run_async(coro: Any) -> Any:
    """Run ``coro`` on a loop of its own, leaving the thread's current loop alone
    (``asyncio.run`` leaves none, which breaks Pulumi's mocks later in the process)."""
    # A Runner with a loop factory cleans up like asyncio.run (pending tasks cancelled,
    # async generators closed) but never sets the thread's current loop.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


REPO = Path(__file__).resolve().parents[2]
CLASSES = ("malignant", "benign")
READY_TIMEOUT_S = 120.0  # generous: a guard against hangs, not a performance threshold
EXIT_TIMEOUT_S = 60.0

SERVE_MODELS = '''
"""Estimators for the serve tests (imported by the server through --project-dir)."""

import time

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def scaled_logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


class SlowClassifier(LogisticRegression):
    """A logistic regression whose probabilities take half a second."""

    def predict_proba(self, X):
        time.sleep(0.5)
        return super().predict_proba(X)
'''


@dataclass(frozen=True)
class Registry:
    root: Path
    project: Path
    x: np.ndarray  # float32 rows of the breast-cancer data
    feature_names: tuple[str, ...]
    cancer_dir: Path  # the artifact directory of model.cancer@v1


def _quiet(_message: str, _fraction: float | None) -> None:
    return None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    base = tmp_path_factory.mktemp("serve")
    project = base / "project"
    project.mkdir()
    (project / "servemodels.py").write_text(SERVE_MODELS)
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    names = tuple(str(n).replace(" ", "_") for n in data.feature_names)
    training = TrainingData(
        task="classification",
        feature_names=names,
        label="diagnosis",
        train=Split(x[:450], y[:450]),
        test=Split(x[450:], y[450:]),
        classes=CLASSES,
    )
    root = base / "registry"
    reg = ModelRegistry(root)
    sys.path.insert(0, str(project))
    try:
        for address, target, status in (
            ("model.cancer", "servemodels.scaled_logistic", "accepted"),
            ("model.cancer", "servemodels.scaled_logistic", "rejected"),
            ("model.slow", "servemodels.SlowClassifier", "accepted"),
        ):
            spec = {"estimator": {"_target_": target}}
            if target.endswith("SlowClassifier"):
                spec["estimator"]["max_iter"] = 5000
            trained = train_sklearn(spec, training, progress=_quiet, address=address)
            directory = base / f"artifact-{address}-{status}"
            trained.save(directory)
            digest = reg.artifacts.put_dir(directory)
            mv = reg.register(
                address,
                digest,
                status=status,
                metrics={"accuracy": 0.95},
                reasons=["accuracy 0.5 < 0.9"] if status == "rejected" else (),
            )
            if status == "accepted":
                reg.set_alias(address, "champion", mv.version)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("servemodels", None)
    cancer_dir = reg.artifacts.path_of(reg.resolve("model.cancer@v1").digest or "")
    return Registry(root, project, x, names, cancer_dir)


# -- running servers -------------------------------------------------------------------------


def _serve_command() -> list[str]:
    """``python -m mlform serve`` once mlform.cli.app registers the command; until then
    ``python -m mlform.cli.serve_cmd``, which is the same app with ``serve`` added."""
    from mlform.cli.app import app

    registered = any(
        c.name == "serve" or getattr(c.callback, "__name__", "") == "serve"
        for c in app.registered_commands
    )
    module = "mlform" if registered else "mlform.cli.serve_cmd"
    return [sys.executable, "-m", module, "serve"]


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("MLFORM_STACK", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(EXIT_TIMEOUT_S)


@contextlib.contextmanager
def serving(
    registry: Registry,
    ref: str,
    *args: str,
    cwd: Path | None = None,
    global_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """A server for ``ref`` on a free port, ready; killed on exit."""
    workdir = cwd or registry.root.parent
    stderr_path = workdir / f"serve-{time.monotonic_ns()}.log"
    command = _serve_command()
    command[3:3] = list(global_args)  # global options go before the command
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, ref, "--registry", str(registry.root), "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=workdir,
            env=_env(),
        )
    server = Server(process, "", stderr_path)
    try:
        server.url = _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_ready(server: Server) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.stderr}")
        if url is None:
            match = re.search(r"serving \S+ as \S+ on (http://\S+) \(", server.stderr)
            url = match.group(1) if match else None
        if url is not None:
            with contextlib.suppress(OSError):
                status, _ = request("GET", f"{url}/v2/health/ready")
                if status == 200:
                    return url
        time.sleep(0.05)
    pytest.fail(f"the server did not become ready:\n{server.stderr}")


def request(
    method: str, url: str, body: bytes | dict[str, Any] | None = None, **headers: str
) -> tuple[int, Any]:
    """(status, JSON document or raw text) of one HTTP request."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        error.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def infer_body(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.reshape(-1).tolist(),
            }
        ],
        **extra,
    }


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = request("GET", f"{url}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


# -- the server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer(registry: Registry) -> Iterator[Server]:
    with serving(registry, "model.cancer@champion") as server:
        yield server


def test_startup_line_names_ref_name_url_and_workers(cancer: Server) -> None:
    assert re.search(
        r"serving model\.cancer@v1 as cancer on http://127\.0\.0\.1:\d+ \(1 worker\)",
        cancer.stderr,
    )


def test_health_and_metadata(cancer: Server, registry: Registry) -> None:
    url = cancer.url
    assert request("GET", f"{url}/v2/health/live") == (200, {"live": True})
    assert request("GET", f"{url}/v2/health/ready") == (200, {"ready": True})
    status, server = request("GET", f"{url}/v2")
    assert status == 200 and server["name"] == "mlform" and server["extensions"] == []
    for path in ("/v2/models/cancer", "/v2/models/cancer/versions/1"):
        status, meta = request("GET", url + path)
        assert status == 200
        assert meta["name"] == "cancer" and meta["versions"] == ["1"]
        assert meta["platform"] == "sklearn"
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 30]}]
        assert [o["name"] for o in meta["outputs"]] == ["predict", "probabilities"]
        assert meta["parameters"]["feature_names"] == list(registry.feature_names)
        assert meta["parameters"]["model"] == "model.cancer"
        assert meta["parameters"]["ref"] == "model.cancer@v1"
    for path in ("/v2/models/cancer/ready", "/v2/models/cancer/versions/1/ready"):
        assert request("GET", url + path) == (200, {"name": "cancer", "ready": True})


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("GET", "/v2/models/nope", 404, "unknown model 'nope'"),
        ("GET", "/v2/models/cancer/versions/7", 404, "no version '7'"),
        ("POST", "/v2/models/cancer/versions/7/infer", 404, "no version '7'"),
        ("POST", "/v2/models/nope/infer", 404, "unknown model"),
        ("GET", "/nowhere", 404, "no such endpoint"),
        ("GET", "/v2/models/cancer/explain", 404, "no such endpoint"),
        ("GET", "/v2/models/cancer/infer", 405, "use POST"),
        ("POST", "/v2/health/ready", 405, "use GET"),
        ("DELETE", "/v2/models/cancer", 405, "use GET"),
    ],
)
def test_unknown_paths_and_methods(
    cancer: Server, method: str, path: str, status: int, expected: str
) -> None:
    got, document = request(method, cancer.url + path, b"{}" if method == "POST" else None)
    assert got == status
    assert expected in document["error"]


def test_infer_matches_the_models_own_predictions(cancer: Server, registry: Registry) -> None:
    estimator = load_sklearn(registry.cancer_dir).estimator
    rows = registry.x[:25]
    status, response = request(
        "POST", f"{cancer.url}/v2/models/cancer/infer", infer_body(rows, id="batch-1")
    )
    assert status == 200, response
    assert response["model_name"] == "cancer" and response["model_version"] == "1"
    assert response["id"] == "batch-1"
    predict, probabilities = response["outputs"]
    assert predict["name"] == "predict" and predict["datatype"] == "BYTES"
    assert predict["shape"] == [25]
    assert predict["data"] == [CLASSES[i] for i in estimator.predict(rows)]
    assert probabilities["datatype"] == "FP64" and probabilities["shape"] == [25, 2]
    np.testing.assert_array_equal(
        np.reshape(probabilities["data"], (25, 2)), estimator.predict_proba(rows)
    )


def test_infer_variants(cancer: Server, registry: Registry) -> None:
    estimator = load_sklearn(registry.cancer_dir).estimator
    url = f"{cancer.url}/v2/models/cancer/versions/1/infer"
    rows = registry.x[:3]
    expected = [CLASSES[i] for i in estimator.predict(rows)]
    # nested data, a generated id, only the requested output
    status, response = request(
        "POST",
        url,
        {
            "inputs": [
                {"name": "input-0", "shape": [3, 30], "datatype": "FP64", "data": rows.tolist()}
            ],
            "outputs": [{"name": "predict"}],
        },
    )
    assert status == 200, response
    assert [o["name"] for o in response["outputs"]] == ["predict"]
    assert response["outputs"][0]["data"] == expected
    assert re.fullmatch(r"[0-9a-f]{32}", response["id"])
    # one input per feature, as BYTES
    inputs = [
        {"name": name, "shape": [3], "datatype": "BYTES", "data": [str(v) for v in rows[:, i]]}
        for i, name in enumerate(registry.feature_names)
    ]
    status, response = request("POST", url, {"inputs": inputs})
    assert status == 200, response
    assert response["outputs"][0]["data"] == expected
    # a single row as shape [30]
    single = {"name": "input-0", "shape": [30], "datatype": "FP32", "data": rows[0].tolist()}
    status, response = request("POST", url, {"inputs": [single]})
    assert status == 200 and response["outputs"][0]["data"] == expected[:1]


BAD_REQUESTS: list[tuple[bytes, str]] = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"id": "x"}', "no 'inputs'"),
    (
        b'{"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP32", "data": [1]}]}',
        "needs 60",
    ),
    (
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", '
        b'"data": [1, 2, 3, 4]}]}',
        "takes 30",
    ),
    (
        b'{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "BF16", "data": [1]}]}',
        "unsupported datatype",
    ),
    (
        b'{"inputs": [{"name": "pixels", "shape": [1, 30], "datatype": "FP32", "data": [1]}]}',
        "unknown input 'pixels'",
    ),
    (
        b'{"inputs": [{"name": "input-0", "shape": [1e12, 30], "datatype": "FP32", "data": [1]}]}',
        "list of integers",
    ),
    (
        b'{"inputs": [{"name": "input-0", "shape": [1000000000000, 30], "datatype": "FP32", '
        b'"data": [1]}]}',
        "needs 30000000000000",
    ),
    (
        b'{"inputs": [{"name": "input-0", "shape": [-2, 30], "datatype": "FP32", "data": [1]}]}',
        "negative",
    ),
    (
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 30], "datatype": "FP32", "data": [1] * 30}
                ],
                "outputs": [{"name": "logits"}],
            }
        ).encode(),
        "unknown output 'logits'",
    ),
]


def test_bad_requests_get_400_with_a_message(cancer: Server) -> None:
    url = f"{cancer.url}/v2/models/cancer/infer"
    for body, expected in BAD_REQUESTS:
        status, document = request("POST", url, body)
        assert status == 400, (body, document)
        assert expected in document["error"], (body, document)


def test_nan_inputs_reach_the_model_and_the_server_survives(
    cancer: Server, registry: Registry
) -> None:
    url = f"{cancer.url}/v2/models/cancer/infer"
    row = registry.x[0].tolist()
    body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP32", "data": row}]}
    body["inputs"][0]["data"][0] = None  # NaN: a logistic regression refuses it
    status, document = request("POST", url, body)
    assert status == 500
    assert "the model failed" in document["error"] and "NaN" in document["error"]
    status, _ = request("POST", url, infer_body(registry.x[:1]))
    assert status == 200


def test_flood_of_garbage_leaves_the_server_answering(cancer: Server, registry: Registry) -> None:
    url = f"{cancer.url}/v2/models/cancer/infer"
    host, port = cancer.url.removeprefix("http://").split(":")
    rng = np.random.default_rng(0)
    for i in range(150):
        kind = i % 5
        if kind == 0:
            body = rng.bytes(int(rng.integers(0, 4000)))
        elif kind == 1:
            body = json.dumps(
                {"inputs": [{"name": "input-0", "shape": [int(rng.integers(-5, 10**9)), 30]}]}
            ).encode()
        elif kind == 2:
            body = b'{"inputs": [' * 2000
        elif kind == 3:
            body = json.dumps(
                {
                    "inputs": [
                        {"name": "input-0", "shape": [1, 30], "datatype": "FP32", "data": [[[]]]}
                    ]
                }
            ).encode()
        else:
            body = b"\x00" * 100
        status, _ = request("POST", url, body)
        assert 400 <= status < 500
    for _ in range(20):  # not even HTTP
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            raw.sendall(rng.bytes(512) + b"\r\n\r\n")
            with contextlib.suppress(OSError):
                raw.recv(4096)
    assert cancer.process.poll() is None
    status, response = request("POST", url, infer_body(registry.x[:2]))
    assert status == 200
    assert len(response["outputs"][0]["data"]) == 2


def test_tritonclient(cancer: Server, registry: Registry) -> None:
    import tritonclient.http as triton

    estimator = load_sklearn(registry.cancer_dir).estimator
    client = triton.InferenceServerClient(url=cancer.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cancer")
        assert client.is_model_ready("cancer", "1")
        assert not client.is_model_ready("nope")
        meta = client.get_model_metadata("cancer")
        assert meta["inputs"][0]["shape"] == [-1, 30]
        rows = registry.x[10:12]
        # JSON, then tritonclient's defaults: binary input data (the binary tensor data
        # extension) and binary outputs asked for (answered in JSON, which it reads too)
        for binary in (False, True):
            tensor = triton.InferInput("input-0", [2, 30], "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = [
                triton.InferRequestedOutput("predict", binary_data=binary),
                triton.InferRequestedOutput("probabilities", binary_data=binary),
            ]
            result = client.infer("cancer", [tensor], outputs=outputs, request_id="t-1")
            labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
            assert labels == [CLASSES[i] for i in estimator.predict(rows)]
            np.testing.assert_array_equal(
                result.as_numpy("probabilities"), estimator.predict_proba(rows)
            )
            assert result.get_response()["id"] == "t-1"
    finally:
        client.close()


# -- metrics, prediction log, shutdown ---------------------------------------------------------


def test_metrics_count_requests_by_endpoint_and_status(registry: Registry) -> None:
    with serving(registry, "cancer@v1", "--name", "diag") as server:
        url = f"{server.url}/v2/models/diag/infer"
        for _ in range(7):
            assert request("POST", url, infer_body(registry.x[:3]))[0] == 200
        for _ in range(4):
            assert request("POST", url, b"{}")[0] == 400
        assert request("GET", f"{server.url}/v2/models/diag")[0] == 200
        samples = metric_samples(server.url)
        hist = "http_request_duration_seconds"
        ids = {"model": "diag", "version": "1"}
        assert metric(samples, f"{hist}_count", endpoint="infer", status="200", **ids) == 7
        assert metric(samples, f"{hist}_count", endpoint="infer", status="400", **ids) == 4
        assert metric(samples, f"{hist}_count", endpoint="metadata", status="200", **ids) == 1
        assert metric(samples, f"{hist}_count", endpoint="health") >= 1  # the readiness polls
        assert metric(samples, f"{hist}_bucket", endpoint="infer", status="200", le="+Inf") == 7
        buckets = {dict(labels)["le"] for (name, labels) in samples if name == f"{hist}_bucket"}
        assert {"0.0005", "0.001", "10.0", "+Inf"} <= buckets
        assert metric(samples, "mlform_inference_requests_total", **ids) == 11
        assert metric(samples, "mlform_inference_rows_total", **ids) == 21
        assert metric(samples, "mlform_inference_errors_total", reason="bad_request") == 4
        assert metric(samples, "mlform_inference_errors_total", reason="model_error") == 0
        assert metric(samples, "mlform_predictions_total", **ids) == 21
        assert metric(samples, "mlform_prediction_score_count", **ids) == 21
        # /metrics itself is not timed
        assert not any(dict(labels).get("endpoint") == "other" for (_, labels) in samples)
        assert server.stop() == 0


def test_body_over_the_limit_gets_413(registry: Registry) -> None:
    with serving(registry, "cancer@v1", "--max-body-mb", "0.01") as server:
        url = f"{server.url}/v2/models/cancer/infer"
        big = infer_body(np.repeat(registry.x[:1], 200, axis=0))
        status, document = request("POST", url, big)
        assert status == 413 and "over the limit" in document["error"]
        assert request("POST", url, infer_body(registry.x[:1]))[0] == 200
        samples = metric_samples(server.url)
        assert metric(samples, "mlform_inference_errors_total", reason="too_large") == 1
        assert server.stop() == 0


def test_prediction_log_holds_every_request_after_sigterm(
    registry: Registry, tmp_path: Path
) -> None:
    log_dir = tmp_path / "predictions"
    sent: list[str] = []
    with serving(registry, "model.cancer@v1", "--prediction-log", str(log_dir)) as server:
        url = f"{server.url}/v2/models/cancer/infer"
        for i in range(60):
            rows = registry.x[i : i + 1 + i % 3]
            status, response = request("POST", url, infer_body(rows, id=f"r{i}"))
            assert status == 200
            sent.append(response["id"])
        assert request("POST", url, b"garbage")[0] == 400  # not logged
        assert server.stop() == 0  # right away: the buffer must be flushed on shutdown
    schema = json.loads((log_dir / "schema.json").read_text())
    assert schema["feature_names"] == list(registry.feature_names)
    assert schema["ref"] == "model.cancer@v1" and schema["classes"] == list(CLASSES)
    files = list(log_dir.glob("predictions-*.jsonl"))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["id"] for r in records] == sent
    first = records[0]
    assert first["model"] == "cancer" and first["ref"] == "model.cancer@v1"
    assert first["version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    np.testing.assert_array_equal(np.asarray(first["inputs"], dtype=np.float32), registry.x[:1])
    assert first["outputs"]["predict"][0] in CLASSES
    assert len(first["outputs"]["probabilities"][0]) == 2
    assert len(records[2]["inputs"]) == 3


def test_labels_are_logged_and_join_the_predictions(registry: Registry, tmp_path: Path) -> None:
    from mlform.monitoring.labels import join, labels_from_endpoint_logs
    from mlform.monitoring.window import WindowSpec, read_window

    deployment = tmp_path / "predictions" / "diag"  # as a deployment lays it out
    log_dir = deployment / "cancer-v1"
    with serving(registry, "model.cancer@v1", "--prediction-log", str(log_dir)) as server:
        models = f"{server.url}/v2/models/cancer"
        status, answer = request("POST", f"{models}/infer", infer_body(registry.x[:1], id="req-1"))
        assert status == 200 and answer["id"] == "req-1"
        predicted = answer["outputs"][0]["data"][0]
        truth = "benign" if predicted == "malignant" else "malignant"
        status, answer = request("POST", f"{models}/infer", infer_body(registry.x[1:3]))
        assert status == 200
        made_up = answer["id"]  # the id the server gave a request that came without one
        status, answer = request(
            "POST", f"{models}/labels", {"labels": [{"id": "req-1", "label": truth}]}
        )
        assert (status, answer) == (200, {"accepted": 1})
        # class indices, lists (one per row), and the versioned path
        body = {"labels": [{"id": "other", "label": 0}, {"id": "multi", "label": ["benign", 1]}]}
        assert request("POST", f"{models}/versions/1/labels", body) == (200, {"accepted": 2})
        assert server.stop() == 0  # right away: the labels must be flushed on shutdown
    files = list(log_dir.glob("labels-*.jsonl"))
    assert [f.name for f in files] == [f"labels-{server.process.pid}.jsonl"]
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [(line["id"], line["label"]) for line in lines] == [
        ("req-1", truth),
        ("other", 0),
        ("multi", ["benign", 1]),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["time"])
    labels = labels_from_endpoint_logs(deployment)
    assert dict(labels.by_request) == {"req-1": truth, "other": 0, "multi": ["benign", 1]}
    window = read_window(deployment, WindowSpec(size=100))
    assert window.rows == 3 and set(window.request_ids) == {"req-1", made_up}
    joined = join(window, labels)
    assert joined.matched_rows == 1 and joined.window_rows == 3
    assert joined.y_true.tolist() == [truth] and joined.y_pred.tolist() == [predicted]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "the request body is empty"),
        (b"labels please", "not valid JSON"),
        ([{"id": "a", "label": "benign"}], "must be a JSON object"),
        ({"id": "a", "label": "benign"}, "has no 'labels'"),
        ({"labels": {"id": "a"}}, "'labels' is an object"),
        ({"labels": ["a"]}, r"labels\[0\] is a string"),
        ({"labels": [{"label": "benign"}]}, r"labels\[0\]\.id is missing"),
        ({"labels": [{"id": 7, "label": "benign"}]}, r"labels\[0\]\.id is a number"),
        ({"labels": [{"id": "a"}]}, r"labels\[0\] \(id 'a'\) has no label"),
        ({"labels": [{"id": "a", "label": []}]}, "is an empty list"),
        ({"labels": [{"id": "a", "label": [["benign"]]}]}, r"label\[0\] .* is a list"),
        (
            {"labels": [{"id": "a", "label": 0}, {"id": "b", "label": "Benign"}]},
            r"labels\[1\]\.label \(id 'b'\): the label 'Benign' is not one of the classes "
            r"'malignant', 'benign' or a class index 0 to 1",
        ),
        ({"labels": [{"id": "a", "label": ["benign", 2]}]}, r"labels\[0\]\.label\[1\]"),
    ],
)
def test_bad_labels_get_400_saying_what_is_expected(
    labelled: Server, body: Any, expected: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = request("POST", f"{labelled.url}/v2/models/cancer/labels", data)
    assert status == 400, answer
    assert re.search(expected, answer["error"]), answer["error"]
    # each names what is expected: the body's shape, or the model's classes
    assert 'expected {"labels": [{"id": "<request id>", "label":' in answer["error"] or (
        "one of the classes" in answer["error"]
    )


@pytest.fixture(scope="module")
def labelled(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a prediction log (it takes labels)."""
    log_dir = tmp_path_factory.mktemp("labelled") / "cancer-v1"
    with serving(registry, "model.cancer@v1", "--prediction-log", str(log_dir)) as server:
        yield server


def test_labels_reach_a_server_through_the_router(labelled: Server, tmp_path: Path) -> None:
    """The router forwards every /v2/models/{name}/... path, labels included."""
    from mlform.serving.router import write_routes
    from mlform.serving.router_client import router_live
    from mlform.serving.routes import RouteTable

    routes = tmp_path / "routes.json"
    table = {
        "generation": 1,
        "upstreams": {"cancer-v1": {"url": labelled.url, "version": "1"}},
        "split": {"cancer-v1": 100},
    }
    write_routes(routes, RouteTable.from_dict(table))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "router.log").open("wb") as stderr:
        command = ["-m", "mlform.serving.router", "--port", str(port), "--routes", str(routes)]
        router = subprocess.Popen(
            [sys.executable, *command],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=_env(),
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not router_live(url, timeout=1.0):
            assert router.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "the router did not start"
            time.sleep(0.05)
        body = {"labels": [{"id": "via-router", "label": "benign"}]}
        for path in ("/v2/models/cancer/labels", "/v2/models/cancer/versions/1/labels"):
            assert request("POST", f"{url}{path}", body) == (200, {"accepted": 1})
        status, answer = request("POST", f"{url}/v2/models/cancer/labels", b"{}")
        assert status == 400 and "has no 'labels'" in answer["error"]
    finally:
        router.send_signal(signal.SIGTERM)
        try:
            router.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            router.kill()
            router.wait()


def test_labels_endpoint_methods_models_and_no_log(labelled: Server, cancer: Server) -> None:
    ok = {"labels": [{"id": "a", "label": "benign"}]}
    status, answer = request("GET", f"{labelled.url}/v2/models/cancer/labels")
    assert status == 405 and "use POST" in answer["error"]
    status, answer = request("POST", f"{labelled.url}/v2/models/other/labels", ok)
    assert status == 404 and "unknown model 'other'" in answer["error"]
    status, answer = request("POST", f"{labelled.url}/v2/models/cancer/versions/2/labels", ok)
    assert status == 404 and "no version '2'" in answer["error"]
    assert request("POST", f"{labelled.url}/v2/models/cancer/labels", {"labels": []}) == (
        200,
        {"accepted": 0},
    )
    # a server without --prediction-log has nowhere to keep labels
    status, answer = request("POST", f"{cancer.url}/v2/models/cancer/labels", ok)
    assert status == 409 and "--prediction-log" in answer["error"]


def test_sigterm_drains_in_flight_requests(registry: Registry) -> None:
    with serving(
        registry, "model.slow", "--project-dir", str(registry.project), "--workers", "1"
    ) as server:
        host, port = server.url.removeprefix("http://").split(":")
        body = json.dumps(infer_body(registry.x[:1])).encode()
        connections = []
        for _ in range(5):  # sent in full before SIGTERM: these must all be answered
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/v2/models/slow/infer", body)
            connections.append(conn)
        time.sleep(0.1)  # the first is now in the model
        server.process.send_signal(signal.SIGTERM)
        statuses = []
        for conn in connections:
            response = conn.getresponse()
            statuses.append(response.status)
            response.read()
            conn.close()
        assert statuses == [200] * 5
        assert server.process.wait(EXIT_TIMEOUT_S) == 0
        with pytest.raises(OSError):  # no longer listening
            socket.create_connection((host, int(port)), timeout=5).close()


def test_a_stop_while_workers_still_start_is_a_clean_exit(registry: Registry) -> None:
    # Stopped as soon as one worker answers: the others may still be warming their model up,
    # before their event loop handles SIGTERM; they must drain and exit 0, not die of it.
    for _ in range(3):
        with serving(registry, "model.cancer@v1", "--workers", "4") as server:
            assert server.stop() == 0, server.stderr


def test_workers_share_the_port_and_aggregate_metrics(registry: Registry, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    total = 60
    with serving(
        registry, "model.cancer@v1", "--workers", "2", "--prediction-log", str(log_dir)
    ) as server:
        assert "(2 workers)" in server.stderr
        url = f"{server.url}/v2/models/cancer/infer"
        errors: list[Any] = []

        def send(count: int) -> None:
            for _ in range(count):
                status, document = request("POST", url, infer_body(registry.x[:1]))
                if status != 200:
                    errors.append(document)

        threads = [threading.Thread(target=send, args=(total // 6,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for _ in range(6):  # whichever worker answers, it reports all of them
            samples = metric_samples(server.url)
            count = metric(
                samples, "http_request_duration_seconds_count", endpoint="infer", status="200"
            )
            assert count == total
            assert metric(samples, "mlform_inference_rows_total") == total
        assert server.stop() == 0
    lines = sum(len(p.read_text().splitlines()) for p in log_dir.glob("predictions-*.jsonl"))
    assert lines == total


def test_a_killed_worker_is_replaced(registry: Registry) -> None:
    with serving(registry, "model.cancer@v1", "--workers", "2") as server:
        children_file = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        if not children_file.exists():
            pytest.skip("this kernel does not list child processes in /proc")
        children = children_file.read_text().split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            now = children_file.read_text().split()
            if len(now) == 2 and children[0] not in now:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the worker was not replaced:\n{server.stderr}")
        for _ in range(10):
            assert (
                request("POST", f"{server.url}/v2/models/cancer/infer", infer_body(registry.x[:1]))[
                    0
                ]
                == 200
            )
        assert server.stop() == 1  # a worker died unexpectedly
        assert "exited unexpectedly" in server.stderr


# -- the command line -------------------------------------------------------------------------


def _run_serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_serve_command(), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (("model.nope@v1",), 1, "no versions of model.nope"),
        (("model.cancer@v9",), 1, "model.cancer@v9 does not exist"),
        (("model.cancer@v2",), 1, "rejected"),
        (("model.cancer@v1", "--port", "70000"), 2, "--port"),
        (("model.cancer@v1", "--workers", "0"), 2, "--workers"),
        (("model.cancer@v1", "--name", "bad/name"), 2, "--name"),
        (("model.cancer@v1", "--max-body-mb", "0"), 2, "--max-body-mb"),
        (("data.cancer@v1",), 1, "data address"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(
    registry: Registry, args: tuple[str, ...], code: int, expected: str
) -> None:
    result = _run_serve(args[0], "--registry", str(registry.root), *args[1:], cwd=registry.root)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert expected in output
    assert "Traceback" not in output


def test_missing_registry_and_missing_project_code(registry: Registry, tmp_path: Path) -> None:
    result = _run_serve("model.cancer@v1", "--registry", str(tmp_path / "nowhere"), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "--registry" in output and "Traceback" not in output
    # the slow model's class lives in the project: without --project-dir it cannot load
    result = _run_serve("model.slow@v1", "--registry", str(registry.root), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "servemodels" in output and "--project-dir" in output
    assert "Traceback" not in output


def test_port_in_use(registry: Registry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_serve(
            "model.cancer@v1",
            "--registry",
            str(registry.root),
            "--port",
            str(port),
            cwd=registry.root,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_registry_of_a_project_stack(tmp_path: Path) -> None:
    """Without --registry: the registry of the stack (-s) of the project (-C)."""
    project = tmp_path / "project"
    api.init(project)  # a scaffolded project: its stacks dev and prod
    state_dir = workspace.state_dir(workspace.load_system(project, "dev"))
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    training = TrainingData(
        task="classification",
        feature_names=tuple(f"f{i}" for i in range(30)),
        label="diagnosis",
        train=Split(x, data.target.astype(np.int64)),
        test=Split(x[:10], data.target[:10].astype(np.int64)),
        classes=(0, 1),
    )
    spec = {
        "estimator": {
            "_target_": "sklearn.ensemble.RandomForestClassifier",
            "n_estimators": 50,
            "max_depth": 6,
            "random_state": 0,
        }
    }
    trained = train_sklearn(spec, training, progress=_quiet, address="model.diagnosis")
    trained.save(tmp_path / "artifact")
    reg = registry_for(state_dir)
    digest = reg.artifacts.put_dir(tmp_path / "artifact")
    reg.register("model.diagnosis", digest, status="accepted", metrics={"roc_auc": 0.99})
    forest = trained.predictor.estimator  # type: ignore[attr-defined]
    command = [*_serve_command()]
    command[3:3] = ["-C", str(project)]
    stderr_path = tmp_path / "serve.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "diagnosis@v1", "-s", "dev", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
            env=_env(),
        )
    server = Server(process, "", stderr_path)
    try:
        server.url = _wait_ready(server)
        status, response = request("POST", f"{server.url}/v2/models/diagnosis/infer", infer_body(x))
        assert status == 200
        predict, probabilities = response["outputs"]
        assert predict["datatype"] == "INT64"
        assert predict["data"] == forest.predict(x).tolist()
        np.testing.assert_array_equal(
            np.reshape(probabilities["data"], (len(x), 2)), forest.predict_proba(x)
        )
        assert server.stop() == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("kind", ["forest", "extra_trees", "logistic", "multinomial"])
def test_fast_paths_equal_scikit_learn(tmp_path: Path, kind: str) -> None:
    """LoadedModel.infer's fast paths (forests, logistic regression) are taken and give
    exactly scikit-learn's numbers, batch by batch and row by row."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlform.serving.loaded_model import _fast_proba, load_model_version

    data = load_iris() if kind == "multinomial" else load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    classes = [str(c) for c in data.target_names]
    estimator = {
        "forest": make_pipeline(
            StandardScaler(), RandomForestClassifier(n_estimators=30, random_state=1)
        ),
        "extra_trees": ExtraTreesClassifier(n_estimators=20, max_depth=5, random_state=2),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "multinomial": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    }[kind]
    estimator.fit(x, y)
    directory = tmp_path / "artifact"
    directory.mkdir()
    joblib.dump(estimator, directory / "model.joblib")
    meta = {
        "framework": "sklearn",
        "task": "classification",
        "classes": classes,
        "feature_names": [f"f{i}" for i in range(x.shape[1])],
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    reg = ModelRegistry(tmp_path / "registry")
    reg.register("model.m", reg.artifacts.put_dir(directory), status="accepted", metrics={})
    model = load_model_version(reg.root, "model.m@v1")
    assert _fast_proba(estimator, len(classes), x.shape[1]) is not None
    for batch in (x, x[:64], x[:65], *(x[i : i + 1] for i in range(0, len(x), 7))):
        ids, proba = model.infer(batch)
        np.testing.assert_array_equal(proba, estimator.predict_proba(batch))
        np.testing.assert_array_equal(ids, estimator.predict(batch))
    with_nan = x[:4].copy()
    with_nan[1, 2] = np.nan  # goes to scikit-learn itself (which may refuse it)
    try:
        expected = estimator.predict_proba(with_nan)
    except ValueError:
        with pytest.raises(ValueError):
            model.infer(with_nan)
    else:
        np.testing.assert_array_equal(model.infer(with_nan)[1], expected)


# -- the parts, in-process -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model.diagnosis@v2", "model.diagnosis@v2"),
        ("diagnosis@v2", "model.diagnosis@v2"),
        ("model.diagnosis", "model.diagnosis@champion"),
        ("diagnosis", "model.diagnosis@champion"),
        ("model.diagnosis@challenger", "model.diagnosis@challenger"),
    ],
)
def test_normalize_ref(text: str, expected: str) -> None:
    from mlform.serving.loaded_model import normalize_ref

    assert normalize_ref(text) == expected


def test_missing_registry_is_a_serve_error(tmp_path: Path) -> None:
    from mlform.errors import MlformError
    from mlform.serving.loaded_model import ServeError, load_model_version

    with pytest.raises(ServeError, match="does not exist") as info:
        load_model_version(tmp_path / "nowhere", "model.x@v1")
    assert isinstance(info.value, MlformError)


def test_bulk_metric_updates_equal_one_by_one() -> None:
    from mlform.serving.metrics import ServerMetrics

    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1, 1, 1], size=200)
    ids = proba.argmax(axis=1)
    together = ServerMetrics("m", "1", classification=True, labels=("a", "b", "c"))
    one_by_one = ServerMetrics("m", "1", classification=True, labels=("a", "b", "c"))
    together.predictions(ids, proba)
    for row in range(len(ids)):
        one_by_one.predictions(ids[row : row + 1], proba[row : row + 1])

    def samples(metrics: ServerMetrics) -> dict[Any, float]:
        text = metrics.render()[0].decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.name.endswith("_created")
        }

    bulk, single = samples(together), samples(one_by_one)
    assert bulk.keys() == single.keys()
    for key, value in bulk.items():
        assert value == pytest.approx(single[key], rel=1e-12), key
    assert bulk[("mlform_prediction_score_count", (("model", "m"), ("version", "1")))] == 200
    regression = ServerMetrics("r", "1", classification=False)
    regression.predictions(np.array([-5.0, 0.5, 3e6, np.nan]), None)
    text = regression.render()[0].decode()
    assert 'mlform_prediction_value_bucket{le="-1.0",model="r",version="1"} 1.0' in text
    assert 'mlform_prediction_value_count{model="r",version="1"} 3.0' in text


def test_prediction_log_writes_everything_on_close(tmp_path: Path) -> None:
    from mlform.serving.prediction_log import PredictionLog

    log = PredictionLog(
        tmp_path, model="m", ref="model.m@v1", version=1, interval=3600, max_buffered=10
    )
    log.start()
    try:
        for i in range(25):
            log.append(f"r{i}", np.array([[i, np.nan]], dtype=np.float32), ["a"], None)
    finally:
        log.close()
    assert log.path is not None
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [r["id"] for r in lines] == [f"r{i}" for i in range(25)]
    assert lines[3]["inputs"] == [[3.0, None]] and lines[3]["outputs"] == {"predict": ["a"]}


def test_not_ready_while_draining(registry: Registry) -> None:

    from aiohttp.test_utils import RawTestServer, TestClient

    from mlform.serving.loaded_model import load_model_version
    from mlform.serving.metrics import ServerMetrics
    from mlform.serving.server import ModelServer

    model = load_model_version(registry.root, "model.cancer@v1")

    async def check() -> None:
        metrics = ServerMetrics("cancer", "1", classification=True, labels=CLASSES)
        app = ModelServer(model, name="cancer", metrics=metrics)
        async with TestClient(RawTestServer(app.handle)) as client:
            assert (await client.get("/v2/health/ready")).status == 200
            app.ready = False
            response = await client.get("/v2/health/ready")
            assert response.status == 503 and await response.json() == {"ready": False}
            assert (await client.get("/v2/models/cancer/ready")).status == 503
            assert (await client.get("/v2/health/live")).status == 200

    run_async(check())

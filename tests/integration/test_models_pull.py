"""``mlform models pull`` as the model-pull init container runs it, then ``mlform serve``.

A real scikit-learn model is trained on the breast-cancer data, stored and registered in a
registry (the artifact store, ``file://``). The pod template of the Kubernetes Deployment
serving it is built with :func:`mlform.infra.kubernetes.model_deployment_objects`; its init
container's command runs as a subprocess (``/models/registry`` moved under a temporary
directory, ``mlform`` being the installed console script), then its server container's
command (port changed to a free one, host to 127.0.0.1), which must answer
``/v2/health/ready`` and a V2 inference request with the model's own predictions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.registry.reference import reference_stats
from mlform.registry.versions import ModelRegistry
from mlform.training.sklearn_trainer import load_sklearn, train_sklearn
from mlform.training.types import Split, TrainingData

pytestmark = pytest.mark.integration

DEPLOYMENT = Address.parse("deployment.cancer-api")
REF = "model.cancer@v2"
CLASSES = ("malignant", "benign")
TIMEOUT_S = 120.0  # guards against hangs, not performance thresholds


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    x: np.ndarray
    artifact: Path  # the artifact directory of model.cancer@v2 in the store


def _quiet(_message: str, _fraction: float | None) -> None:
    return None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """model.cancer v1 and v2 (champion), accepted, with cards and reference statistics."""
    base = tmp_path_factory.mktemp("store")
    bundle = load_breast_cancer()
    x = bundle.data.astype(np.float32)
    y = bundle.target.astype(np.int64)
    names = tuple(str(n).replace(" ", "_") for n in bundle.feature_names)
    data = TrainingData(
        task="classification",
        feature_names=names,
        label="diagnosis",
        train=Split(x[:450], y[:450]),
        test=Split(x[450:], y[450:]),
        classes=CLASSES,
    )
    registry = ModelRegistry(base / "registry")
    for c in (0.1, 1.0):
        spec = {
            "estimator": {
                "_target_": "sklearn.linear_model.LogisticRegression",
                "C": c,
                "max_iter": 5000,
            }
        }
        trained = train_sklearn(spec, data, progress=_quiet, address="model.cancer")
        trained.save(base / f"artifact-{c}")
        digest = registry.artifacts.put_dir(base / f"artifact-{c}")
        stats = reference_stats(
            data.train.x, names, task="classification", y=data.train.y, classes=CLASSES
        )
        version = registry.register(
            "model.cancer",
            digest,
            status="accepted",
            metrics={"accuracy": 0.95},
            card_markdown=f"# model.cancer (C={c})\n",
            reference_stats=stats,
            lineage={"eventType": "COMPLETE"},
        )
        registry.set_alias("model.cancer", "champion", version.version)
    artifact = registry.artifacts.path_of(registry.resolve(REF).digest or "")
    return Store(registry.root, f"file://{registry.root}", x, artifact)


def _pod(store: Store) -> dict[str, Any]:
    """The pod template of the Deployment serving REF from the store."""
    manifests = k.model_deployment_objects(
        DEPLOYMENT,
        {"model": "cancer", "replicas": 1, "strategy": {"type": "rolling"}},
        project="cancer",
        namespace="ml",
        image="registry.example/cancer:1",
        served=[("cancer-v2", REF, 100)],
        artifact_store=store.uri,
    )
    deployment = next(m for m in manifests if m.body["kind"] == "Deployment")
    spec: dict[str, Any] = deployment.body["spec"]["template"]["spec"]
    return spec


def _local(argv: list[str], models: Path) -> list[str]:
    """A container's command run here: the installed ``mlform``, ``/models`` moved."""
    assert argv[0] == "mlform"
    script = Path(sys.executable).parent / "mlform"
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "mlform"]
    return [*head, *(a.replace(k.MODELS_DIR, str(models), 1) for a in argv[1:])]


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("MLFORM_STACK", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlform", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=TIMEOUT_S,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(errors="replace")


@contextlib.contextmanager
def _serving(argv: list[str], log: Path) -> Iterator[str]:
    """The server container's command with a free port on 127.0.0.1; its URL once ready."""
    port = _free_port()
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=stderr, env=_env(), cwd=log.parent
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                if _request(f"{url}/v2/health/ready")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not become ready:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_the_pod_pulls_its_model_then_serves_it(store: Store, tmp_path: Path) -> None:
    pod = _pod(store)
    (pull,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert pull["name"] == "model-pull" and server["name"] == "server"
    assert pull["command"][:4] == ["mlform", "models", "pull", REF]
    models = tmp_path / "models"  # the emptyDir at /models
    models.mkdir()

    done = subprocess.run(
        _local(pull["command"], models),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Pulled {REF}" in done.stdout and store.uri in done.stdout
    pulled = ModelRegistry(models / "registry")
    version = pulled.resolve(REF)
    assert pulled.artifacts.verify(version.digest or "")
    assert [v.version for v in pulled.list_versions("model.cancer")] == [2]
    assert pulled.file_of(version, "card") is not None
    assert pulled.file_of(version, "reference") is not None
    assert pulled.file_of(version, "lineage") is None and pulled.aliases("model.cancer") == {}

    # A restarted init container pulls again into the same emptyDir: a verified no-op.
    again = subprocess.run(
        _local(pull["command"], models),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already in" in again.stdout and "nothing copied" in again.stdout

    rows = store.x[:5]
    expected = load_sklearn(store.artifact).predict(rows)
    with _serving(_local(server["command"], models), tmp_path / "server.log") as url:
        status, ready = _request(f"{url}/v2/health/ready")
        assert status == 200, ready
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.reshape(-1).tolist(),
                }
            ]
        }
        status, answer = _request(f"{url}/v2/models/{DEPLOYMENT.name}/infer", body)
    assert status == 200, answer
    assert answer["model_name"] == DEPLOYMENT.name
    labels = next(o for o in answer["outputs"] if o["datatype"] == "BYTES")["data"]
    assert labels == [CLASSES[i] for i in expected]


def test_errors_name_the_ref_and_the_store(store: Store, tmp_path: Path) -> None:
    target = str(tmp_path / "registry")
    for scheme in ("s3://bucket/registry", "gs://bucket/r", "az://c/r", "https://h/r"):
        done = _cli("models", "pull", REF, "--from", scheme, "--to", target, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "not supported yet" in done.stderr and "file://" in done.stderr
        assert "Traceback" not in done.stderr
    missing = _cli(
        "models", "pull", "model.cancer@v7", "--from", store.uri, "--to", target, cwd=tmp_path
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "model.cancer@v7 is not in the store" in " ".join(missing.stderr.split())
    assert not (tmp_path / "registry").exists()


def test_a_tampered_store_is_refused(store: Store, tmp_path: Path) -> None:
    """Copy the store, change one artifact byte: the pull fails and leaves nothing."""
    copy = tmp_path / "store"
    subprocess.run(["cp", "-r", str(store.root), str(copy)], check=True)
    digest = ModelRegistry(copy).resolve(REF).digest or ""
    weights = ModelRegistry(copy).artifacts.path_of(digest) / "model.joblib"
    weights.chmod(0o600)
    weights.write_bytes(weights.read_bytes() + b"\0")
    target = tmp_path / "models" / "registry"
    source = f"file://{copy}"
    done = _cli("models", "pull", REF, "--from", source, "--to", str(target), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert f"{REF}: digest mismatch in the store file://{copy}" in message
    assert not target.exists()


def test_push_publishes_to_a_store_that_pull_reads(store: Store, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    pushed = _cli(
        "models", "push", "model.cancer@champion", "--to", f"file://{shared}",
        "--registry", str(store.root), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    report = json.loads(pushed.stdout)
    assert report["ref"] == REF and report["copied"] is True
    pulled = _cli(
        "models", "pull", REF, "--from", f"file://{shared}", "--to", str(tmp_path / "r"),
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == report["digest"]
    refused = _cli(
        "models", "push", REF, "--to", "s3://bucket/x", "--registry", str(store.root),
        cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "--to s3://bucket/x" in " ".join(refused.stderr.split())
    assert re.search(r"not supported\s+yet", refused.stderr)

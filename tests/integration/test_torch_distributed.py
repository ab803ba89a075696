"""Data-parallel torch training under a real ``torchrun`` (CPU, gloo, 2 processes).

Each test launches ``tests/integration/support/ddp_train.py`` (one rank: it trains a small
MLP on the breast-cancer data through ``train_torch`` and reports its parameters' digest,
recorded hardware and artifact files) in two ways: ``--standalone`` with two processes on
one node, and two ``torchrun`` processes of one process each joined by the static
rendezvous, as the Kubernetes indexed Job launches them (``torchrun_command``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from mlform.infra.kubernetes import NODE_RANK_REF, torchrun_command
from mlform.providers.base import StepFailed
from mlform.training.torch_trainer import load_torch

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parent / "support" / "ddp_train.py"
TIMEOUT_S = 300  # a guard against a hung rendezvous, not a performance threshold


def _torchrun() -> list[str]:
    beside = Path(sys.executable).parent / "torchrun"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reports(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _check_run(out: Path) -> None:
    rank0, rank1 = _reports(out)
    # Both ranks trained as one run of two, over gloo.
    for report in (rank0, rank1):
        assert report["hardware"]["world_size"] == 2
        assert report["hardware"]["distributed_backend"] == "gloo"
        assert report["hardware"]["device"] == "cpu"
    # DDP kept the parameters in sync, and the shared metrics made early stopping agree.
    assert rank0["parameters_sha256"] == rank1["parameters_sha256"]
    assert rank0["epochs"] == rank1["epochs"]
    assert rank0["best_epoch"] == rank1["best_epoch"]
    assert len(rank0["epochs"]) < 40, "early stopping should have ended the run"
    # Only rank 0 wrote an artifact (and no checkpoint is left behind).
    assert rank0["primary"] is True and rank1["primary"] is False
    assert rank0["files"] == ["model.pt", "module.json"] and rank1["files"] == []
    assert not (out / "artifact-rank1").exists()
    assert not (out / "checkpoints").exists()
    # The artifact loads and predicts.
    bundle = load_breast_cancer()
    x, y = bundle.data.astype(np.float32)[480:], bundle.target[480:]
    predictor = load_torch(out / "artifact-rank0")
    accuracy = float((predictor.predict(x) == y).mean())
    assert accuracy > 0.85, accuracy
    proba = predictor.predict_proba(x)
    assert proba is not None and proba.shape == (len(y), 2)


def test_standalone_two_processes(tmp_path: Path) -> None:
    command = [
        *_torchrun(),
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=2",
        str(SCRIPT),
        str(tmp_path),
    ]
    done = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 1: epoch 1/40" in done.stdout
    _check_run(tmp_path)


def test_two_nodes_static_rendezvous(tmp_path: Path) -> None:
    """Two torchrun 'nodes' as the indexed Job starts them: its command, node rank filled in."""
    port = _free_port()
    template = torchrun_command(
        nodes=2,
        procs_per_node=1,
        endpoint_host="127.0.0.1",
        script=[str(SCRIPT), str(tmp_path)],
        run_id="ddp-test",
        port=port,
    )
    assert template[0] == "torchrun"
    logs, processes = [], []
    for node in (0, 1):
        argv = [a.replace(NODE_RANK_REF, str(node)) for a in template[1:]]
        log = (tmp_path / f"node{node}.log").open("w")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [*_torchrun(), *argv], env=_env(), stdout=log, stderr=subprocess.STDOUT
            )
        )
    try:
        codes = [p.wait(TIMEOUT_S) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    output = "".join((tmp_path / f"node{n}.log").read_text() for n in (0, 1))
    assert codes == [0, 0], output
    _check_run(tmp_path)


def test_malformed_torchrun_environment_is_a_diagnostic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WORLD_SIZE without torchrun's other variables: a clear error before any collective."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ddp_train
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StepFailed) as caught:
        ddp_train.main(tmp_path)
    diagnostic = caught.value.diagnostic
    assert "MASTER_ADDR is not set" in diagnostic.summary
    assert "torchrun" in diagnostic.detail and diagnostic.address == "model.ddp"
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(StepFailed, match="RANK='two' is not a non-negative integer"):
        ddp_train.main(tmp_path)

"""Training Jobs of models: where a model trains, the Job it becomes, and waiting for it.

Pure code only: the spec's ``training`` block, the problems a model's training settings
have on each target, the Job (and torchrun Service) built for a run, a Job's state from
its status, and the wait loop driven by a fake clock. The real thing runs against an API
server in tests/integration/test_kubernetes_training.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlform.addresses import Address
from mlform.diagnostics import Severity
from mlform.infra import kubernetes as k
from mlform.providers.base import ProviderContext, StepFailed
from mlform.providers.job_wait import (
    TAIL_LINES,
    TAIL_PODS,
    JobGone,
    WaitedJob,
    job_state,
    pod_failures,
    wait_for_job,
)
from mlform.providers.models_cluster import training_problems
from mlform.providers.models_fit import local_path, read_result, trained_model
from mlform.providers.training_job import (
    RUN_ID_KEY,
    TrainingSettings,
    job_name,
    training_manifests,
    trains_in_cluster,
)
from mlform.spec.models import SklearnModel, TorchModel, Training

FOREST = Address.parse("model.forest")
NET = Address.parse("model.net")
RUN = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
FINGERPRINTS = {"config": "sha256:aa", "toolchain": "sha256:bb"}
GPU_PROFILE = {
    "profile": "gpu",
    "cpu": 8,
    "memory": "32Gi",
    "gpu": {"count": 1, "type": "a100"},
    "node_selector": {"gpu": "a100"},
    "tolerations": [],
}


def _sklearn(**training: Any) -> dict[str, Any]:
    spec = SklearnModel.model_validate(
        {
            "framework": "sklearn",
            "task": "classification",
            "features": "f",
            "estimator": {"_target_": "sklearn.linear_model.LogisticRegression"},
            "labels": {"team": "risk"},
            "training": training,
        }
    )
    config = spec.model_dump(mode="json", by_alias=True)
    config["resources"] = {"profile": "small", "cpu": 1, "memory": "2Gi", "tolerations": []}
    return config


def _torch(**training: Any) -> dict[str, Any]:
    spec = TorchModel.model_validate(
        {
            "framework": "torch",
            "task": "classification",
            "features": "f",
            "module": {"_target_": "mlform.torch.mlp.MLP"},
            "training": training,
        }
    )
    config = spec.model_dump(mode="json", by_alias=True)
    config["resources"] = dict(GPU_PROFILE)
    return config


def _context(tmp_path: Path, target: str = "kubernetes") -> ProviderContext:
    return ProviderContext(
        project_dir=tmp_path,
        state_dir=tmp_path / ".mlform" / "stacks" / "dev",
        stack="dev",
        target=target,
        settings={
            "project": {"name": "churn"},
            "target": {"type": target, "namespace": "ml"} if target == "kubernetes" else {},
        },
    )


# -- the spec and where a model trains -------------------------------------------------------


def test_training_defaults_and_bad_values_are_refused() -> None:
    assert Training() == Training(where="auto", nodes=1, procs_per_node=None, timeout="1h")
    for bad in ({"nodes": 0}, {"where": "gpu-farm"}, {"timeout": "soon"}, {"procs_per_node": 0}):
        with pytest.raises(ValidationError):
            Training.model_validate(bad)


@pytest.mark.parametrize(
    ("where", "target", "cluster"),
    [
        ("auto", "kubernetes", True),
        ("auto", "local", False),
        ("auto", "render", False),
        ("local", "kubernetes", False),
        ("cluster", "kubernetes", True),
        ("cluster", "local", True),  # and training_problems refuses it
    ],
)
def test_auto_trains_on_the_cluster_only_on_the_kubernetes_target(
    where: str, target: str, cluster: bool
) -> None:
    assert trains_in_cluster(_sklearn(where=where), target) is cluster


def test_several_nodes_need_torch_and_cluster_training_needs_kubernetes(tmp_path: Path) -> None:
    found = training_problems(FOREST, _sklearn(nodes=2, procs_per_node=3), _context(tmp_path))
    assert [(d.severity, d.key) for d in found] == [
        (Severity.ERROR, "models.forest.training.nodes"),
        (Severity.ERROR, "models.forest.training.procs_per_node"),
    ]
    assert "needs framework torch" in found[0].summary
    local = training_problems(FOREST, _sklearn(where="cluster"), _context(tmp_path, "local"))
    assert [(d.severity, d.key) for d in local] == [
        (Severity.ERROR, "models.forest.training.where")
    ]
    assert "target: kubernetes" in local[0].summary
    ignored = training_problems(NET, _torch(nodes=2), _context(tmp_path, "local"))
    assert [(d.severity, d.key) for d in ignored] == [
        (Severity.WARNING, "models.net.training.nodes")
    ]
    assert training_problems(NET, _torch(nodes=2), _context(tmp_path)) == []
    assert training_problems(FOREST, _sklearn(), _context(tmp_path, "local")) == []


def test_a_config_the_job_cannot_take_is_an_error_naming_training(tmp_path: Path) -> None:
    found = training_problems(FOREST, _sklearn(image="has spaces:1"), _context(tmp_path))
    assert [(d.severity, d.key) for d in found] == [(Severity.ERROR, "models.forest.training")]
    # torchrun runs one process per GPU: 3 processes on a 1-GPU profile cannot be.
    found = training_problems(NET, _torch(procs_per_node=3), _context(tmp_path))
    assert [(d.severity, d.key) for d in found] == [
        (Severity.ERROR, "models.net.training.procs_per_node")
    ]
    assert "one process per GPU" in found[0].detail


# -- the Job of a run ------------------------------------------------------------------------


def test_a_single_process_model_is_one_job_running_mlform_models_fit(tmp_path: Path) -> None:
    context = _context(tmp_path)
    (job,) = training_manifests(
        FOREST, _sklearn(timeout="90m"), context, run_id=RUN, fingerprints=FINGERPRINTS
    )
    state = str(context.state_dir.resolve())
    body = job.body
    assert (job.owner, job.name, body["kind"]) == (FOREST, "job", "Job")
    meta = body["metadata"]
    assert meta["name"] == job_name(FOREST, RUN) == "train-forest-0f1e2d3c"
    assert meta["namespace"] == "ml"
    assert meta["labels"][RUN_ID_KEY] == RUN
    assert meta["labels"]["team"] == "risk"
    assert meta["labels"]["app.kubernetes.io/component"] == "model"
    assert meta["annotations"]["pulumi.com/skipAwait"] == "true"
    spec = body["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 5400)
    assert "ttlSecondsAfterFinished" not in spec  # the Job is the record of the run
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "mlform/churn:latest"
    assert container["command"] == [
        "mlform",
        "models",
        "fit",
        "forest",
        "-s",
        "dev",
        "--run-id",
        RUN,
        "--to",
        f"file://{state}/registry/runs/{RUN}",
        "--state-dir",
        state,
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["MLFORM_EXPECTED_FINGERPRINTS"]) == FINGERPRINTS
    assert container["resources"] == k.Resources(cpu=1, memory="2Gi").as_kubernetes()
    assert pod["volumes"] == [
        {"hostPath": {"path": state, "type": "DirectoryOrCreate"}, "name": "mlform-state"}
    ]
    assert container["volumeMounts"] == [{"mountPath": state, "name": "mlform-state"}]


def test_the_job_passes_applys_command_line_overrides_on_after_a_double_dash(
    tmp_path: Path,
) -> None:
    overrides = ("models.forest.estimator.max_depth=3", "~deployments.api")
    context = replace(_context(tmp_path), overrides=overrides)
    (job,) = training_manifests(FOREST, _sklearn(), context, run_id=RUN, fingerprints=FINGERPRINTS)
    command = job.body["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-3:] == ["--", *overrides]
    (torch_job, _) = training_manifests(
        NET, _torch(nodes=2), context, run_id=RUN, fingerprints=FINGERPRINTS
    )
    torch_command = torch_job.body["spec"]["template"]["spec"]["containers"][0]["command"]
    assert torch_command[-3:] == ["--", *overrides]


def test_an_image_of_its_own_and_a_long_name_stay_valid(tmp_path: Path) -> None:
    address = Address.parse("model.a_very_long_model_name_that_goes_on_and_on_and_on_forever")
    (job,) = training_manifests(
        address,
        _sklearn(image="ghcr.io/org/trainer:7"),
        _context(tmp_path),
        run_id=RUN,
        fingerprints={},
    )
    name = job.body["metadata"]["name"]
    assert k.check_dns_label(name, rfc1035=True) == name and len(name) <= 56
    assert job.body["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/org/trainer:7"
    )


def test_a_torch_model_on_two_nodes_is_an_indexed_torchrun_job(tmp_path: Path) -> None:
    context = _context(tmp_path)
    job, service = training_manifests(
        NET, _torch(nodes=2), context, run_id=RUN, fingerprints=FINGERPRINTS
    )
    name = job_name(NET, RUN)
    spec = job.body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed",
        2,
        2,
    )
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:7] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=static",
        f"--master-addr={name}-0.{name}",
        f"--master-port={k.RDZV_PORT}",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
    ]
    assert command[7:12] == ["-m", "mlform", "models", "fit", "net"]
    assert container["resources"]["limits"][k.GPU_RESOURCE] == "1"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert {"effect": "NoSchedule", "key": k.GPU_RESOURCE, "operator": "Exists"} in pod[
        "tolerations"
    ]
    # /dev/shm from the builder, the state directory from the training Job.
    assert [v["name"] for v in pod["volumes"]] == ["dshm", "mlform-state"]
    assert [m["name"] for m in container["volumeMounts"]] == ["dshm", "mlform-state"]
    assert (service.name, service.body["spec"]["clusterIP"]) == ("service-rendezvous", "None")
    assert service.body["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_a_one_gpu_torch_model_on_one_node_needs_no_torchrun(tmp_path: Path) -> None:
    (job,) = training_manifests(NET, _torch(), _context(tmp_path), run_id=RUN, fingerprints={})
    assert job.body["spec"]["template"]["spec"]["containers"][0]["command"][0] == "mlform"
    assert TrainingSettings.of(_torch()).timeout_s == 3600


# -- a Job's state and waiting for it ------------------------------------------------------


def _status(kind: str | None = None, succeeded: int = 0, reason: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"succeeded": succeeded, "active": 1}
    if kind is not None:
        status["conditions"] = [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": kind, "status": "True", "reason": reason, "message": "it stopped"},
        ]
    return status


def test_job_state_reads_the_terminal_condition() -> None:
    assert job_state(None).finished is None
    assert job_state(_status()).finished is None
    done = job_state(_status("Complete", succeeded=2))
    assert (done.finished, done.succeeded) == ("complete", 2)
    failed = job_state(_status("Failed", reason="BackoffLimitExceeded"))
    assert (failed.finished, failed.reason, failed.message) == (
        "failed",
        "BackoffLimitExceeded",
        "it stopped",
    )
    pending = {"conditions": [{"type": "Failed", "status": "False"}]}
    assert job_state(pending).finished is None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


WAITED = WaitedJob(NET, "train-net-1", "ml", 2, "10m", "kubectl logs job/train-net-1 -n ml")


def _wait(
    statuses: Iterator[Any],
    messages: list[str],
    timeout_s: float = 600,
    read_failures: Any = tuple,
) -> Any:
    clock = _Clock()

    def read() -> Mapping[str, Any] | None:
        item = next(statuses)
        if isinstance(item, Exception):
            raise item
        status: Mapping[str, Any] | None = item
        return status

    return wait_for_job(
        read,
        WAITED,
        timeout_s=timeout_s,
        progress=lambda m, _f: messages.append(m),
        sleep=clock.sleep,
        clock=clock,
        poll_s=5,
        read_failures=read_failures,
    )


def test_waiting_reports_progress_once_per_change_and_returns_when_complete() -> None:
    messages: list[str] = []
    statuses = iter(
        [
            _status(),
            _status(),
            _status(succeeded=1),
            OSError("connection refused"),
            _status("Complete", 2),
        ]
    )
    assert _wait(statuses, messages).finished == "complete"
    assert messages[:2] == [
        "waiting for job ml/train-net-1 (0/2 pods succeeded)",
        "waiting for job ml/train-net-1 (1/2 pods succeeded)",
    ]
    assert "reading its status failed: OSError: connection refused" in messages[2]


def test_a_failed_job_fails_the_step_naming_the_job_and_its_logs() -> None:
    with pytest.raises(StepFailed) as failed:
        _wait(iter([_status("Failed", reason="BackoffLimitExceeded")]), [])
    diagnostic = failed.value.diagnostic
    assert diagnostic.summary == (
        "model.net: training job ml/train-net-1 failed (BackoffLimitExceeded: it stopped)"
    )
    assert "kubectl logs job/train-net-1 -n ml" in diagnostic.detail
    assert diagnostic.key == "models.net.training"


def _pod(name: str, index: int, *containers: tuple[int | None, str]) -> dict[str, Any]:
    """A Job's pod (wire form) whose containers ended with these (exit code, message)."""
    statuses = [
        {
            "name": f"c{i}",
            "state": {"terminated": {"exitCode": code, "reason": "Error", "message": text}},
        }
        if code is not None
        else {"name": f"c{i}", "state": {"running": {}}}
        for i, (code, text) in enumerate(containers)
    ]
    return {
        "metadata": {
            "name": name,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {"containerStatuses": statuses},
    }


def test_failed_pods_show_their_last_lines_in_index_order() -> None:
    long_output = "\n".join(f"epoch {i}" for i in range(40)) + "\nValueError: max_depth\n"
    pods = [
        _pod("train-net-1-1-xyz", 1, (1, long_output)),
        _pod("train-net-1-0-abc", 0, (0, "done"), (137, "")),
        _pod("train-net-1-2-def", 2, (None, "")),
    ]
    first, second = pod_failures(pods)
    assert first == "pod train-net-1-0-abc exited 137 (Error), printing nothing the kubelet kept."
    head, *lines = second.splitlines()
    assert head == "pod train-net-1-1-xyz exited 1 (Error); its last lines:"
    assert len(lines) == TAIL_LINES
    assert lines[-1] == "    ValueError: max_depth" and lines[0] == "    epoch 21"
    many = [_pod(f"p{i}", i, (1, "boom")) for i in range(5)]
    assert pod_failures(many)[-1] == f"({5 - TAIL_PODS} more failed pods)"
    assert len(pod_failures(many)) == TAIL_PODS + 1
    assert pod_failures([]) == [] and pod_failures([_pod("ok", 0, (0, "fine"))]) == []


def test_a_failed_jobs_diagnostic_shows_what_its_pods_printed() -> None:
    tail = ["pod train-net-1-0-abc exited 1 (Error); its last lines:\n    ValueError: boom"]
    with pytest.raises(StepFailed) as failed:
        _wait(
            iter([_status("Failed", reason="BackoffLimitExceeded")]), [], read_failures=lambda: tail
        )
    detail = failed.value.diagnostic.detail
    assert detail.startswith(tail[0] + "\nSee everything the training printed: kubectl logs")

    def unreadable() -> list[str]:
        raise OSError("forbidden")

    with pytest.raises(StepFailed) as without:
        _wait(
            iter([_status("Failed", reason="BackoffLimitExceeded")]), [], read_failures=unreadable
        )
    assert without.value.diagnostic.detail.startswith("See what the training printed: kubectl")


def test_a_job_past_its_deadline_or_timeout_or_deleted_fails_the_step() -> None:
    with pytest.raises(StepFailed) as deadline:
        _wait(iter([_status("Failed", reason="DeadlineExceeded")]), [])
    assert "did not complete within models.net.training.timeout (10m)" in str(
        deadline.value.diagnostic.summary
    )
    forever = iter(lambda: _status(), None)
    with pytest.raises(StepFailed) as timed_out:
        _wait(forever, [], timeout_s=60)
    assert "training.timeout (10m)" in timed_out.value.diagnostic.summary
    with pytest.raises(StepFailed) as gone:
        _wait(iter([JobGone("train-net-1")]), [])
    assert "was deleted while mlform waited" in gone.value.diagnostic.summary


# -- what a run leaves behind ----------------------------------------------------------------


def test_a_result_directory_reads_back_as_a_trained_model(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlform.training.sklearn_trainer import _save

    x = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    estimator = LogisticRegression().fit(x, [0, 0, 1, 1])
    _save(tmp_path / "run" / "model", estimator, {"task": "classification", "classes": [0, 1]})
    (tmp_path / "run" / "result.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "address": "model.forest",
                "run_id": RUN,
                "framework": "sklearn",
                "params": {"C": 1.0},
                "epochs": [{"epoch": 1, "metrics": {"loss": 0.5, "gap": None}, "seconds": 1}],
                "duration_s": 2.5,
                "hardware": {"device": "cpu"},
                "fingerprints": FINGERPRINTS,
            }
        )
    )
    result = read_result(tmp_path / "run")
    trained = trained_model(result)
    assert (trained.framework, trained.params, trained.duration_s) == ("sklearn", {"C": 1.0}, 2.5)
    assert [dict(e.metrics) for e in trained.epochs] == [{"loss": 0.5}]
    assert list(trained.predictor.predict(x)) == [0, 0, 1, 1]
    copied = trained.save(tmp_path / "copy")
    assert sorted(p.name for p in copied) == ["meta.json", "model.joblib"]
    with pytest.raises(ValueError, match="no training result"):
        read_result(tmp_path / "missing")


def test_results_go_only_to_absolute_file_uris() -> None:
    from mlform.errors import ConfigError

    assert local_path("file:///srv/store/runs/1") == Path("/srv/store/runs/1")
    for bad in ("s3://bucket/runs/1", "file://relative/dir", "/srv/store"):
        with pytest.raises(ConfigError):
            local_path(bad)

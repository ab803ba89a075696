"""The Kubernetes builders of deployments, monitors and training runs: fields, decisions, schemas.

Every generated manifest is validated strictly (unknown fields are errors) against the
Kubernetes JSON schemas; ``tests/integration/test_kubernetes_objects_server.py`` submits the
same manifests to a real API server.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import Manifest
from mlform.rollout.journal import Served
from mlform.spec.deployments import DeploymentSpec
from mlform.spec.load import _dump, _with_profile
from mlform.spec.monitors import MonitorSpec
from mlform.spec.settings import Profile

# The version tests/unit/test_infra_kubernetes.py validates against; strict schemas.
KUBERNETES_VERSION = "1.33.0"
API = Address.parse("deployment.api")
TRAIN = Address.parse("model.churn")
DRIFT = Address.parse("monitor.drift")
PROJECT = "churn"
NS = "ml"
IMAGE = "registry.example/mlform:1.4"
STORE = "s3://mlform-artifacts/churn/registry"
V2 = ("churn-v2", "model.churn@v2", 100)
V3 = ("churn-v3", "model.churn@v3", 100)
GPU_PROFILE = {
    "cpu": 2,
    "memory": "8Gi",
    "gpu": {"count": 1, "type": "A100"},
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
}


def _validate(manifest: Manifest) -> None:
    kubernetes_validate.validate(
        copy.deepcopy(dict(manifest.body)), KUBERNETES_VERSION, strict=True
    )


def config(profile: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A deployment's config as spec.load builds it: the spec dumped, the profile merged in."""
    spec = DeploymentSpec.model_validate({"model": "churn", **fields})
    profiles = {"gpu": Profile.model_validate(profile)} if profile is not None else {}
    return _with_profile(_dump(spec), "gpu" if profile is not None else None, profiles)


def objects(cfg: dict[str, Any], served: list[Any], **kwargs: Any) -> dict[str, Manifest]:
    built = k.model_deployment_objects(
        API,
        cfg,
        project=PROJECT,
        namespace=NS,
        image=IMAGE,
        served=served,
        artifact_store=STORE,
        **kwargs,
    )
    names = [m.name for m in built]
    assert len(names) == len(set(names))
    return {m.name: m for m in built}


def pod(deployment: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = deployment.body["spec"]["template"]["spec"]
    return spec


def pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment.body["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def deployments(built: dict[str, Manifest]) -> list[Manifest]:
    return [m for m in built.values() if m.body["kind"] == "Deployment"]


# -- service ------------------------------------------------------------------------------


def test_workload_builds_its_service_with_the_service_builder() -> None:
    _, built = k.workload(
        API, name="api", namespace=NS, image=IMAGE, project=PROJECT, port=8080, key="x"
    )
    selector = built.body["spec"]["selector"]
    again = k.service(
        API,
        "api",
        selector,
        port=8080,
        namespace=NS,
        project=PROJECT,
        annotations={
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": "8080",
            "prometheus.io/scrape": "true",
        },
        key="x",
    )
    assert again == built


def test_service_fields_and_a_headless_one() -> None:
    plain = k.service(
        API, "api", {"app": "a"}, port=80, target_port=8080, namespace=NS, project=PROJECT
    )
    assert plain.name == "service"
    assert plain.body["spec"] == {
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        "selector": {"app": "a"},
        "type": "ClusterIP",
    }
    headless = k.service(
        API, "train", {"app": "a"}, port=29500, port_name="rdzv", namespace=NS,
        project=PROJECT, headless=True, key="rendezvous",
    )  # fmt: skip
    assert headless.name == "service-rendezvous"
    assert headless.body["spec"]["clusterIP"] == "None"
    assert headless.body["spec"]["publishNotReadyAddresses"] is True
    for manifest in (plain, headless):
        _validate(manifest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"selector": {}}, "needs a selector"),
        ({"name": "2api"}, "starting with a lower-case letter"),
        ({"port": 0}, "port"),
        ({"target_port": 70000}, "port"),
        ({"target_port": "Http_Port"}, "port name 'Http_Port' is invalid"),
        ({"port_name": "a-very-long-port-name"}, "1-15"),
        ({"selector": {"app": "a b"}}, "label"),
    ],
)
def test_bad_services_are_refused(args: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "api", "selector": {"app": "a"}, "port": 80}
    fields.update(args)
    name, selector = fields.pop("name"), fields.pop("selector")
    with pytest.raises(ValueError, match=message):
        k.service(API, name, selector, namespace=NS, project=PROJECT, **fields)


# -- secret -------------------------------------------------------------------------------


def test_secret_holds_string_data_and_nothing_else_carries_it() -> None:
    manifest = k.secret(
        API, "store-creds", {"B_KEY": "hunter2", "A_KEY": "s3cr3t"}, namespace=NS, project=PROJECT
    )
    assert manifest.name == "secret"
    body = dict(manifest.body)
    assert body["stringData"] == {"A_KEY": "s3cr3t", "B_KEY": "hunter2"}
    assert list(body["stringData"]) == ["A_KEY", "B_KEY"]
    assert body["type"] == "Opaque"
    assert "data" not in body
    outside = repr({key: value for key, value in body.items() if key != "stringData"})
    assert "s3cr3t" not in outside and "hunter2" not in outside
    _validate(manifest)


def test_secret_errors_name_keys_never_values() -> None:
    with pytest.raises(ValueError, match="secret key 'a/b'") as bad_key:
        k.secret(API, "s", {"a/b": "topsecret"}, namespace=NS, project=PROJECT)
    assert "topsecret" not in str(bad_key.value)
    with pytest.raises(TypeError, match="'token' must be a string") as bad_value:
        k.secret(API, "s", {"token": 12345678}, namespace=NS, project=PROJECT)  # type: ignore[dict-item]
    assert "12345678" not in str(bad_value.value)
    with pytest.raises(ValueError, match="not a valid DNS label"):
        k.secret(API, "Store_Creds", {}, namespace=NS, project=PROJECT)


# -- HPA and PDB --------------------------------------------------------------------------


def test_horizontal_pod_autoscaler() -> None:
    hpa = k.horizontal_pod_autoscaler(
        API, "api-churn-v3", min_replicas=2, max_replicas=8, target_cpu_utilization=70,
        namespace=NS, project=PROJECT,
    )  # fmt: skip
    assert hpa.name == "horizontalpodautoscaler"
    assert hpa.body["apiVersion"] == "autoscaling/v2"
    assert hpa.body["metadata"]["name"] == "api-churn-v3"  # named after its target by default
    assert hpa.body["spec"] == {
        "maxReplicas": 8,
        "metrics": [
            {
                "resource": {
                    "name": "cpu",
                    "target": {"averageUtilization": 70, "type": "Utilization"},
                },
                "type": "Resource",
            }
        ],
        "minReplicas": 2,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api-churn-v3"},
    }
    named = k.horizontal_pod_autoscaler(
        API, "api-churn-v3", min_replicas=1, max_replicas=1, target_cpu_utilization=80,
        namespace=NS, project=PROJECT, name="api",
    )  # fmt: skip
    assert named.body["metadata"]["name"] == "api"
    for manifest in (hpa, named):
        _validate(manifest)


@pytest.mark.parametrize(
    ("low", "high", "cpu", "message"),
    [
        (0, 3, 80, "min_replicas must be 1 or more"),
        (4, 3, 80, r"max_replicas \(3\) must not be below min_replicas \(4\)"),
        (1, 3, 0, "target_cpu_utilization"),
    ],
)
def test_bad_autoscalers_are_refused(low: int, high: int, cpu: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        k.horizontal_pod_autoscaler(
            API, "api", min_replicas=low, max_replicas=high, target_cpu_utilization=cpu,
            namespace=NS, project=PROJECT,
        )  # fmt: skip


def test_pod_disruption_budget() -> None:
    selector = {"mlform.dev/address": "deployment.api", "app.kubernetes.io/part-of": PROJECT}
    pdb = k.pod_disruption_budget(
        API, "api", selector, min_available=1, namespace=NS, project=PROJECT
    )
    assert pdb.name == "poddisruptionbudget"
    assert pdb.body["apiVersion"] == "policy/v1"
    assert pdb.body["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": dict(sorted(selector.items()))},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    share = k.pod_disruption_budget(
        API, "api", selector, max_unavailable="25%", namespace=NS, project=PROJECT
    )
    assert share.body["spec"]["maxUnavailable"] == "25%"
    assert "minAvailable" not in share.body["spec"]
    for manifest in (pdb, share):
        _validate(manifest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "exactly one of min_available or max_unavailable"),
        ({"min_available": 1, "max_unavailable": 1}, "exactly one"),
        ({"min_available": 1, "selector_labels": {}}, "selects every pod"),
        ({"min_available": -1}, "0 or more"),
        ({"max_unavailable": "150%"}, "percentage"),
        ({"max_unavailable": "half"}, "percentage"),
    ],
)
def test_bad_disruption_budgets_are_refused(args: dict[str, Any], message: str) -> None:
    selector = args.pop("selector_labels", {"app": "api"})
    with pytest.raises(ValueError, match=message):
        k.pod_disruption_budget(API, "api", selector, namespace=NS, project=PROJECT, **args)


# -- jobs ---------------------------------------------------------------------------------


def test_job() -> None:
    manifest = k.job(
        TRAIN,
        "train-churn",
        namespace=NS,
        project=PROJECT,
        image=IMAGE,
        command=["python", "-m", "train"],
        args=["--epochs", "3"],
        env={"B": "2", "A": "1"},
        resources=k.Resources(cpu=4, memory="16Gi", gpus=1),
        node_selector={"pool": "gpu"},
        tolerations=[k.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        active_deadline_s=3600,
        ttl_after_finished_s=600,
    )
    assert manifest.name == "job"
    spec = manifest.body["spec"]
    assert spec["backoffLimit"] == 0
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (3600, 600)
    assert "completionMode" not in spec
    template = spec["template"]
    container = template["spec"]["containers"][0]
    assert container["name"] == "main"
    assert container["command"] == ["python", "-m", "train"]
    assert container["args"] == ["--epochs", "3"]
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "train-churn"
    assert template["metadata"]["labels"]["mlform.dev/address"] == "model.churn"
    assert "name" not in template["metadata"]
    _validate(manifest)


def test_an_indexed_job() -> None:
    manifest = k.job(
        TRAIN, "train", namespace=NS, project=PROJECT, image=IMAGE, command=["run"],
        completions=4, parallelism=4, indexed=True, subdomain="train",
    )  # fmt: skip
    spec = manifest.body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed",
        4,
        4,
    )
    assert spec["template"]["spec"]["subdomain"] == "train"
    _validate(manifest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"indexed": True}, "needs completions"),
        ({"subdomain": "train"}, "subdomain is for indexed jobs"),
        ({"completions": 0}, "completions must be 1 or more"),
        ({"parallelism": -1}, "parallelism"),
        ({"backoff_limit": -1}, "backoff_limit"),
        ({"active_deadline_s": 0}, "active_deadline_s"),
        ({"ttl_after_finished_s": -5}, "ttl_after_finished_s"),
        ({"command": []}, "needs a command"),
        ({"image": "bad image"}, "image"),
        ({"name": "t" * 62, "indexed": True, "completions": 12}, "hostname"),
    ],
)
def test_bad_jobs_are_refused(args: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "train", "image": IMAGE, "command": ["run"]}
    fields.update(args)
    name = fields.pop("name")
    with pytest.raises(ValueError, match=message):
        k.job(TRAIN, name, namespace=NS, project=PROJECT, **fields)


def test_torchrun_static_rendezvous_uses_the_job_index_as_node_rank() -> None:
    command = k.torchrun_command(
        nodes=4, procs_per_node=8, endpoint_host="train-0.train", script=["train.py", "--lr", "3"],
        run_id="train",
    )  # fmt: skip
    assert command == [
        "torchrun",
        "--nnodes=4",
        "--nproc-per-node=8",
        "--rdzv-backend=static",
        "--master-addr=train-0.train",
        "--master-port=29500",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        "train.py",
        "--lr",
        "3",
    ]


def test_torchrun_c10d_rendezvous_passes_no_node_rank() -> None:
    command = k.torchrun_command(
        nodes=2, procs_per_node=1, endpoint_host="t-0.t", script=["-m", "pkg.train"],
        run_id="t", rendezvous="c10d", port=29400,
    )  # fmt: skip
    assert command[3:6] == ["--rdzv-backend=c10d", "--rdzv-endpoint=t-0.t:29400", "--rdzv-id=t"]
    assert not any(arg.startswith("--node-rank") for arg in command)


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_torchrun_accepts_the_flags(rendezvous: str) -> None:
    """torch's own parser reads the command as Kubernetes expands it (index 1)."""
    run = pytest.importorskip("torch.distributed.run")
    command = k.torchrun_command(
        nodes=3, procs_per_node=2, endpoint_host="train-0.train", script=["train.py", "--x"],
        run_id="train", rendezvous=rendezvous,  # type: ignore[arg-type]
    )  # fmt: skip
    expanded = [arg.replace("$(JOB_COMPLETION_INDEX)", "1") for arg in command[1:]]
    args = run.parse_args(expanded)
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("3", "2", rendezvous)
    assert (args.training_script, args.training_script_args) == ("train.py", ["--x"])
    if rendezvous == "static":
        assert (args.node_rank, args.master_addr, args.master_port) == (1, "train-0.train", 29500)
        assert run.get_rdzv_endpoint(args) == "train-0.train:29500"
    else:
        assert (args.rdzv_endpoint, args.rdzv_id, args.node_rank) == (
            "train-0.train:29500",
            "train",
            0,
        )


def test_distributed_training_job() -> None:
    job, headless = k.distributed_training_job(
        TRAIN, "churn-ddp", namespace=NS, project=PROJECT, image=IMAGE,
        script=["-m", "churn.train"], nodes=2, resources=k.Resources(cpu=8, memory="32Gi", gpus=4),
    )  # fmt: skip
    assert (job.name, headless.name) == ("job", "service-rendezvous")
    spec = job.body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod_spec = spec["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"][:3] == ["torchrun", "--nnodes=2", "--nproc-per-node=4"]
    assert "--master-addr=churn-ddp-0.churn-ddp" in container["command"]
    assert container["command"][-2:] == ["-m", "churn.train"]
    assert container["ports"] == [{"containerPort": 29500, "name": "rdzv", "protocol": "TCP"}]
    assert container["volumeMounts"] == [{"mountPath": "/dev/shm", "name": "dshm"}]
    assert pod_spec["volumes"] == [{"emptyDir": {"medium": "Memory"}, "name": "dshm"}]
    # Pod DNS: the pods' subdomain is the headless Service, which selects them.
    assert pod_spec["subdomain"] == headless.body["metadata"]["name"] == "churn-ddp"
    assert headless.body["spec"]["clusterIP"] == "None"
    assert headless.body["spec"]["ports"][0]["port"] == 29500
    assert selects(headless.body["spec"]["selector"], spec["template"]["metadata"]["labels"])
    for manifest in (job, headless):
        _validate(manifest)
    with pytest.raises(ValueError, match="one process per GPU"):
        k.distributed_training_job(
            TRAIN, "ddp", namespace=NS, project=PROJECT, image=IMAGE, script=["t.py"], nodes=2,
            resources=k.Resources(gpus=4), procs_per_node=2,
        )  # fmt: skip
    cpu_only, _ = k.distributed_training_job(
        TRAIN, "ddp", namespace=NS, project=PROJECT, image=IMAGE, script=["t.py"], nodes=2,
        resources=k.Resources(), rendezvous="c10d",
    )  # fmt: skip
    command = cpu_only.body["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--nproc-per-node=1" in command and "--rdzv-endpoint=ddp-0.ddp:29500" in command


# -- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "expression", "exact"),
    [
        ("1m", "* * * * *", True),
        ("60s", "* * * * *", True),
        ("5m", "*/5 * * * *", True),
        ("30m", "*/30 * * * *", True),
        ("1h", "0 * * * *", True),
        ("6h", "0 */6 * * *", True),
        ("12h", "0 */12 * * *", True),
        ("1d", "0 0 * * *", True),
        ("24h", "0 0 * * *", True),
        ("7d", "0 0 * * 0", True),
        ("1w", "0 0 * * 0", True),
        # Rounded up: cron's grain is a minute, and steps must divide the hour / the day.
        ("500ms", "* * * * *", False),
        ("30s", "* * * * *", False),
        ("90s", "*/2 * * * *", False),
        ("7m", "*/10 * * * *", False),
        ("45m", "0 * * * *", False),
        ("90m", "0 */2 * * *", False),
        ("5h", "0 */6 * * *", False),
        ("13h", "0 0 * * *", False),
        ("2d", "0 0 * * 0", False),
        ("30d", "0 0 1 * *", False),
    ],
)
def test_cron_schedule(every: str, expression: str, exact: bool) -> None:
    schedule = k.cron_schedule(every)
    assert (schedule.expression, schedule.exact) == (expression, exact)
    from mlform.spec.base import parse_duration

    assert schedule.period_s >= parse_duration(every)  # never more often than asked
    if not exact:
        assert schedule.note is not None
        assert f"every {every}" in schedule.note and expression in schedule.note


def test_cron_schedule_note_says_what_happened() -> None:
    assert k.cron_schedule("90s").note == (
        "every 90s is not a cron schedule (one-minute granularity, periods that divide the "
        "hour, day or week): rounded up to every 2m (*/2 * * * *)"
    )


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("0s", "longer than 0"),
        ("32d", "the longest period it repeats is a month"),
        ("5 minutes", "is not a duration"),
    ],
)
def test_impossible_schedules_are_refused(every: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        k.cron_schedule(every)


def test_cron_job_runs_a_monitor_on_its_schedule() -> None:
    monitor = MonitorSpec.model_validate(
        {"deployment": "api", "type": "data_drift", "schedule": {"every": "90s"}}
    )
    manifest = k.cron_job(
        DRIFT, "drift", monitor.schedule.every, namespace=NS, project=PROJECT, image=IMAGE,
        command=["mlform", "monitor", "run", "monitor.drift"],
        resources=k.Resources(cpu=0.5, memory="512Mi"),
    )  # fmt: skip
    assert manifest.name == "cronjob"
    spec = manifest.body["spec"]
    assert spec["schedule"] == "*/2 * * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 120
    annotations = manifest.body["metadata"]["annotations"]
    assert annotations["mlform.dev/every"] == "90s"
    assert annotations["mlform.dev/schedule-note"] == k.cron_schedule("90s").note
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["backoffLimit"] == 0
    container = job_spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlform", "monitor", "run", "monitor.drift"]
    labels = spec["jobTemplate"]["metadata"]["labels"]
    assert labels["mlform.dev/address"] == "monitor.drift"
    _validate(manifest)
    exact = k.cron_job(
        DRIFT, "drift", "1d", namespace=NS, project=PROJECT, image=IMAGE, command=["x"]
    )
    assert "mlform.dev/schedule-note" not in exact.body["metadata"]["annotations"]
    assert exact.body["spec"]["startingDeadlineSeconds"] == 3600
    _validate(exact)


def test_cron_job_names_leave_room_for_their_jobs() -> None:
    k.cron_job(DRIFT, "d" * 52, "5m", namespace=NS, project=PROJECT, image=IMAGE, command=["x"])
    with pytest.raises(ValueError, match="at most 52 characters"):
        k.cron_job(DRIFT, "d" * 53, "5m", namespace=NS, project=PROJECT, image=IMAGE, command=["x"])


# -- canary replica split -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        # 10 %
        (1, 10, (1, 1, False)),  # one pod each: a one-pod surge, 50 %
        (2, 10, (1, 1, False)),
        (3, 10, (2, 1, False)),
        (10, 10, (9, 1, True)),
        # 25 %
        (1, 25, (1, 1, False)),
        (2, 25, (1, 1, False)),
        (3, 25, (2, 1, False)),
        (10, 25, (7, 3, False)),  # 2.5 is a tie: the larger canary, as Argo
        # 50 %
        (1, 50, (1, 1, True)),
        (2, 50, (1, 1, True)),
        (3, 50, (1, 2, False)),  # 1.5 is a tie: the larger canary
        (10, 50, (5, 5, True)),
        # ends and the clamp
        (10, 0, (10, 0, True)),
        (10, 100, (0, 10, True)),
        (1, 100, (0, 1, True)),
        (0, 50, (0, 0, True)),
        (4, 99, (1, 3, False)),  # the stable track keeps a pod
        (4, 1, (3, 1, False)),  # the canary gets a pod
        (4, 75, (1, 3, True)),
        (2, 75, (1, 1, False)),  # ceil would take every pod: the floor wins
        (5, 20, (4, 1, True)),
    ],
)
def test_canary_replicas(total: int, weight: int, expected: tuple[int, int, bool]) -> None:
    assert k.canary_replicas(total, weight) == expected


def test_canary_replicas_invariants() -> None:
    for total in range(2, 40):
        for weight in range(1, 100):
            stable, canary, exact = k.canary_replicas(total, weight)
            assert stable + canary == total
            assert 1 <= canary <= total - 1
            assert exact == (canary * 100 == weight * total)
            # Nearest to the weight among the allowed counts (ties: the larger canary).
            best = min(
                range(1, total),
                key=lambda c: (abs(c * 100 - weight * total), -c),
            )
            assert canary == best, (total, weight)


@pytest.mark.parametrize(("total", "weight"), [(-1, 10), (3, -1), (3, 101)])
def test_canary_replicas_refuses_impossible_input(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match=r"replicas|weight"):
        k.canary_replicas(total, weight)


# -- model deployments --------------------------------------------------------------------


def test_a_rolling_deployment_is_one_deployment_replaced_by_kubernetes() -> None:
    built = objects(config(replicas=3, strategy={"type": "rolling", "max_surge": 1}), [V3])
    assert list(built) == ["deployment", "service", "poddisruptionbudget"]
    deployment = built["deployment"]
    assert deployment.body["metadata"]["name"] == "api"
    assert deployment.body["spec"]["replicas"] == 3
    assert deployment.body["spec"]["strategy"] == {
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        "type": "RollingUpdate",
    }
    labels = deployment.body["metadata"]["labels"]
    assert (labels["mlform.dev/track"], labels["mlform.dev/version"]) == ("stable", "churn-v3")
    # The selector leaves the version out: a new version is a rolling update of the same pods.
    assert "mlform.dev/version" not in deployment.body["spec"]["selector"]["matchLabels"]
    recreate = objects(config(strategy={"type": "recreate"}), [V3])["deployment"]
    assert recreate.body["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(ValueError, match="cannot both be 0"):
        objects(config(strategy={"type": "rolling", "max_surge": 0, "max_unavailable": "0%"}), [V3])


def test_the_server_pod() -> None:
    built = objects(config(GPU_PROFILE, replicas=2, labels={"team": "risk"}), [V3])
    deployment = built["deployment"]
    spec = pod(deployment)
    (server,) = spec["containers"]
    assert server["name"] == "server"
    assert server["image"] == IMAGE
    assert server["command"] == [
        "mlform", "serve", "model.churn@v3", "--registry", "/models/registry", "--name", "api",
        "--host", "0.0.0.0", "--port", "8080",
        "--prediction-log", "/var/lib/mlform/predictions",
    ]  # fmt: skip
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = server["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/live"
    assert startup["failureThreshold"] * startup["periodSeconds"] == 600
    assert server["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert server["resources"] == {
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "2", "memory": "8Gi"},
    }
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert spec["tolerations"] == [
        {"effect": "NoSchedule", "key": "dedicated", "operator": "Equal", "value": "ml"},
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"},
    ]
    assert (
        spec["terminationGracePeriodSeconds"]
        >= 30 + server["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    template_meta = deployment.body["spec"]["template"]["metadata"]
    assert {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }.items() <= template_meta["annotations"].items()
    assert template_meta["annotations"]["mlform.dev/model-ref"] == "model.churn@v3"
    assert template_meta["annotations"]["mlform.dev/gpu-type"] == "A100"
    assert template_meta["labels"]["team"] == "risk"
    # Scraped once, through the pods: the Service carries no scrape annotations.
    assert "prometheus.io/scrape" not in built["service"].body["metadata"]["annotations"]


def test_the_model_is_pulled_by_an_init_container_into_an_empty_dir() -> None:
    built = objects(config(GPU_PROFILE), [V3], artifact_secret="store-creds")
    spec = pod(built["deployment"])
    (pull,) = spec["initContainers"]
    assert pull["name"] == "model-pull"
    assert pull["image"] == IMAGE
    assert pull["command"] == [
        "mlform", "models", "pull", "model.churn@v3", "--from", STORE, "--to", "/models/registry",
    ]  # fmt: skip
    assert pull["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert pull["volumeMounts"] == [{"mountPath": "/models", "name": "models"}]
    assert "nvidia.com/gpu" not in pull["resources"]["limits"]
    assert pull["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    server = spec["containers"][0]
    assert {"mountPath": "/models", "name": "models", "readOnly": True} in server["volumeMounts"]
    assert "envFrom" not in server  # the store's credentials stay in the init container
    assert {"emptyDir": {}, "name": "models"} in spec["volumes"]


def test_no_prediction_log_no_gpu_no_profile() -> None:
    built = objects(config(prediction_log={"enabled": False}), [V3])
    spec = pod(built["deployment"])
    server = spec["containers"][0]
    assert "--prediction-log" not in server["command"]
    assert spec["volumes"] == [{"emptyDir": {}, "name": "models"}]
    assert server["resources"] == {
        "limits": {"memory": "1Gi"},
        "requests": {"cpu": "1", "memory": "1Gi"},
    }
    assert "tolerations" not in spec and "nodeSelector" not in spec
    assert "envFrom" not in spec["initContainers"][0]
    # One replica: no disruption budget (minAvailable 1 would block every drain).
    assert "poddisruptionbudget" not in built


def test_port_image_and_served_objects() -> None:
    built = objects(
        config(port=0, image="registry.example/custom:2"),
        [Served("churn-v3", "model.churn@v3")],
    )
    server = pod(built["deployment"])["containers"][0]
    assert server["command"][-4:-2] == ["--port", "8080"]  # 0 (any free port) is 8080 here
    assert server["image"] == "registry.example/custom:2"
    assert built["service"].body["spec"]["ports"][0]["port"] == 8080
    custom = objects(config(port=9000), [V3])
    assert custom["service"].body["spec"]["ports"][0]["port"] == 9000


@pytest.mark.parametrize("replicas", [1, 2, 3, 10])
@pytest.mark.parametrize("weight", [10, 25, 50])
def test_a_canary_splits_replicas_between_two_deployments(replicas: int, weight: int) -> None:
    built = objects(
        config(replicas=replicas, strategy={"type": "canary"}),
        [V2, ("churn-v3", "model.churn@v3", weight)],
    )
    stable, canary = built["deployment-churn-v2"], built["deployment-churn-v3"]
    expected_stable, expected_canary, _ = k.canary_replicas(replicas, weight)
    assert (stable.body["spec"]["replicas"], canary.body["spec"]["replicas"]) == (
        expected_stable,
        expected_canary,
    )
    assert stable.body["metadata"]["name"] == "api-churn-v2"
    assert canary.body["metadata"]["name"] == "api-churn-v3"
    assert stable.body["metadata"]["labels"]["mlform.dev/track"] == "stable"
    assert canary.body["metadata"]["labels"]["mlform.dev/track"] == "canary"
    assert pod_labels(canary)["mlform.dev/version"] == "churn-v3"
    # One Service over both tracks: traffic follows the ready pods.
    selector = built["service"].body["spec"]["selector"]
    assert selects(selector, pod_labels(stable)) and selects(selector, pod_labels(canary))
    # Each Deployment selects its own pods only.
    assert selects(stable.body["spec"]["selector"]["matchLabels"], pod_labels(stable))
    assert not selects(stable.body["spec"]["selector"]["matchLabels"], pod_labels(canary))
    assert not selects(canary.body["spec"]["selector"]["matchLabels"], pod_labels(stable))
    for manifest in built.values():
        _validate(manifest)


def test_promoting_a_canary_relabels_its_deployment_without_touching_its_pods() -> None:
    cfg = config(replicas=4, strategy={"type": "canary"})
    during = objects(cfg, [V2, ("churn-v3", "model.churn@v3", 25)])
    after = objects(cfg, [V3])
    assert list(after) == ["deployment-churn-v3", "service", "poddisruptionbudget"]
    canary, promoted = during["deployment-churn-v3"], after["deployment-churn-v3"]
    assert promoted.body["metadata"]["labels"]["mlform.dev/track"] == "stable"
    assert promoted.body["spec"]["replicas"] == 4
    assert promoted.body["spec"]["template"] == canary.body["spec"]["template"]
    assert promoted.body["spec"]["selector"] == canary.body["spec"]["selector"]


def test_blue_green_before_during_and_after_promotion() -> None:
    cfg = config(replicas=3, strategy={"type": "blue_green", "preview_replicas": 1})
    before = objects(cfg, [V2, V3])
    assert list(before) == [
        "deployment-churn-v2",
        "deployment-churn-v3",
        "service",
        "service-preview",
        "poddisruptionbudget",
    ]
    blue, green = before["deployment-churn-v2"], before["deployment-churn-v3"]
    assert (blue.body["spec"]["replicas"], green.body["spec"]["replicas"]) == (3, 1)
    assert blue.body["metadata"]["labels"]["mlform.dev/track"] == "stable"
    assert green.body["metadata"]["labels"]["mlform.dev/track"] == "preview"
    active = before["service"].body["spec"]["selector"]
    preview = before["service-preview"].body
    assert active["mlform.dev/version"] == "churn-v2"
    assert preview["metadata"]["name"] == "api-preview"
    assert selects(active, pod_labels(blue)) and not selects(active, pod_labels(green))
    assert selects(preview["spec"]["selector"], pod_labels(green))
    assert not selects(preview["spec"]["selector"], pod_labels(blue))

    promoting = objects(cfg, [V2, V3], phase="promoting")
    assert promoting["deployment-churn-v3"].body["spec"]["replicas"] == 3  # scaled up first
    assert promoting["service"] == before["service"]  # still on blue

    after = objects(cfg, [V2, V3], phase="promoted")
    assert list(after) == [
        "deployment-churn-v2",
        "deployment-churn-v3",
        "service",
        "poddisruptionbudget",
    ]
    old, new = after["deployment-churn-v2"], after["deployment-churn-v3"]
    assert old.body["metadata"]["labels"]["mlform.dev/track"] == "previous"
    assert new.body["metadata"]["labels"]["mlform.dev/track"] == "stable"
    assert (old.body["spec"]["replicas"], new.body["spec"]["replicas"]) == (3, 3)
    switched = after["service"].body["spec"]["selector"]
    assert switched["mlform.dev/version"] == "churn-v3"
    assert selects(switched, pod_labels(new)) and not selects(switched, pod_labels(old))
    # The preview's pods are the promoted ones: promotion did not restart them.
    assert new.body["spec"]["template"] == green.body["spec"]["template"]

    settled = objects(cfg, [V3])  # after scale_down_delay
    assert list(settled) == ["deployment-churn-v3", "service", "poddisruptionbudget"]
    assert settled["service"] == after["service"]
    for built in (before, promoting, after, settled):
        for manifest in built.values():
            _validate(manifest)


def test_autoscaling_adds_an_hpa_on_the_stable_deployment() -> None:
    cfg = config(
        replicas=1,
        autoscaling={"min_replicas": 2, "max_replicas": 6, "target_cpu_utilization": 70},
        strategy={"type": "canary"},
    )
    built = objects(cfg, [V2, ("churn-v3", "model.churn@v3", 50)])
    hpa = built["horizontalpodautoscaler"]
    assert hpa.body["metadata"]["name"] == "api"
    assert hpa.body["spec"]["scaleTargetRef"]["name"] == "api-churn-v2"
    assert (hpa.body["spec"]["minReplicas"], hpa.body["spec"]["maxReplicas"]) == (2, 6)
    # The HPA owns the stable replicas; the canary's share comes from max(replicas, min).
    assert "replicas" not in built["deployment-churn-v2"].body["spec"]
    assert built["deployment-churn-v3"].body["spec"]["replicas"] == 1
    assert built["poddisruptionbudget"].body["spec"]["minAvailable"] == 1
    rolling = objects(config(autoscaling={"max_replicas": 3}), [V3])
    assert rolling["horizontalpodautoscaler"].body["spec"]["scaleTargetRef"]["name"] == "api"
    assert "replicas" not in rolling["deployment"].body["spec"]
    assert "poddisruptionbudget" not in rolling  # min_replicas 1
    promoted = objects(
        config(autoscaling={"max_replicas": 3}, strategy={"type": "blue_green"}),
        [V2, V3],
        phase="promoted",
    )
    target = promoted["horizontalpodautoscaler"].body["spec"]["scaleTargetRef"]["name"]
    assert target == "api-churn-v3"
    for manifest in [*built.values(), *rolling.values(), *promoted.values()]:
        _validate(manifest)


def test_the_disruption_budget_covers_every_track() -> None:
    built = objects(config(replicas=4, strategy={"type": "canary"}), [V2, V3])
    pdb = built["poddisruptionbudget"].body["spec"]
    assert pdb["minAvailable"] == 1
    for deployment in deployments(built):
        assert selects(pdb["selector"]["matchLabels"], pod_labels(deployment))


def test_names_are_dns_labels_and_deterministic() -> None:
    owner = Address.parse("deployment.Churn_API-" + "x" * 40)
    long_up = ("Churn_Model-v12-" + "y" * 50, "model.churn@v12", 30)
    first = k.model_deployment_objects(
        owner, config(replicas=2, strategy={"type": "canary"}), project=PROJECT, namespace=NS,
        image=IMAGE, served=[V2, long_up], artifact_store=STORE,
    )  # fmt: skip
    again = k.model_deployment_objects(
        owner, config(replicas=2, strategy={"type": "canary"}), project=PROJECT, namespace=NS,
        image=IMAGE, served=[V2, long_up], artifact_store=STORE,
    )  # fmt: skip
    assert first == again
    assert [repr(m.body) for m in first] == [repr(m.body) for m in again]
    for manifest in first:
        name = manifest.body["metadata"]["name"]
        assert k.check_dns_label(name, rfc1035=True) == name
        _validate(manifest)
    # Distinct names stay distinct once shortened.
    assert k.dns_name("Churn_API") != k.dns_name("churn-api") == "churn-api"
    assert k.dns_name("2api").startswith("m-2api-")
    assert len(k.dns_name("a" * 100)) == 63


@pytest.mark.parametrize(
    ("cfg", "served", "kwargs", "message"),
    [
        ({}, [], {}, "nothing to serve"),
        ({}, [("churn", "model.churn@champion", 100)], {}, "pinned version"),
        ({}, [("churn", "model.churn", 100)], {}, "pinned version"),
        ({}, [V2, V3], {}, "at most 1 version"),
        (
            {"strategy": {"type": "canary"}},
            [V2, V3, ("c-v4", "model.churn@v4", 5)],
            {},
            "at most 2",
        ),
        ({"strategy": {"type": "canary"}}, [V2, ("churn-v2", "model.churn@v3", 5)], {}, "distinct"),
        ({"strategy": {"type": "canary"}}, [V2, ("c-v3", "model.churn@v3", 120)], {}, "0-100"),
        ({"strategy": {"type": "canary"}}, [V2, V3], {"phase": "promoted"}, "phase 'promoted'"),
        ({"strategy": {"type": "blue_green"}}, [V3], {"phase": "promoting"}, "phase"),
        (
            {"strategy": {"type": "shadow", "model": "other"}},
            [V3],
            {},
            "needs a router",
        ),
        (
            {
                "strategy": {
                    "type": "ab_test",
                    "variants": [
                        {"model": "a", "weight": 50},
                        {"model": "b", "weight": 50},
                    ],
                }
            },
            [V2, V3],
            {},
            "ab_test needs a router",
        ),
        ({}, [V3], {"artifact_store": "bucket/registry"}, "artifact_store"),
        ({}, [V3], {"artifact_store": "ftp://host/registry"}, "artifact_store"),
        ({}, [V3], {"namespace": "ML"}, "not a valid DNS label"),
        ({}, [V3], {"artifact_secret": "Creds"}, "not a valid DNS label"),
        ({"labels": {"team": "risk and ops"}}, [V3], {}, "label"),
    ],
)
def test_bad_deployments_are_refused(
    cfg: dict[str, Any], served: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"project": PROJECT, "namespace": NS, "image": IMAGE}
    fields["artifact_store"] = STORE
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        k.model_deployment_objects(API, config(**cfg), served=served, **fields)


# -- every manifest, strictly -------------------------------------------------------------


def _everything() -> list[Manifest]:
    canary = config(GPU_PROFILE, replicas=3, strategy={"type": "canary"}, labels={"team": "risk"})
    blue_green = config(
        replicas=2, autoscaling={"max_replicas": 4}, strategy={"type": "blue_green"}
    )
    return [
        *objects(canary, [V2, ("churn-v3", "model.churn@v3", 10)], artifact_secret="s").values(),
        *objects(blue_green, [V2, V3]).values(),
        *objects(blue_green, [V2, V3], phase="promoted").values(),
        *objects(config(strategy={"type": "recreate"}), [V3]).values(),
        k.secret(API, "store-creds", {"AWS_ACCESS_KEY_ID": "x"}, namespace=NS, project=PROJECT),
        *k.distributed_training_job(
            TRAIN,
            "ddp",
            namespace=NS,
            project=PROJECT,
            image=IMAGE,
            script=["t.py"],
            nodes=3,
            resources=k.Resources(cpu=8, memory="64Gi", gpus=8),
            tolerations=[k.Toleration(key="nvidia.com/gpu", operator="Exists")],
        ),
        k.cron_job(DRIFT, "drift", "7m", namespace=NS, project=PROJECT, image=IMAGE, command=["x"]),
    ]


@pytest.mark.parametrize(
    "manifest",
    _everything(),
    ids=lambda m: f"{m.logical_name}:{m.body['metadata']['name']}",
)
def test_every_generated_manifest_validates_strictly(manifest: Manifest) -> None:
    _validate(manifest)

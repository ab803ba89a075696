"""A deployment's env, the stack's namespace and quota, and the artifact store, as pure code.

What reaches the API server is proven in
tests/integration/test_kubernetes_stack_settings.py; here: which objects and fields the
builders write, which keys the spec refuses, and that Secrets are revealed only in the
program's copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlform.addresses import Address
from mlform.diagnostics import Severity
from mlform.infra import kubernetes as k
from mlform.infra import kubernetes_stack as ks
from mlform.infra.model import Manifest
from mlform.providers.base import ProviderContext
from mlform.providers.deployments import _resources
from mlform.providers.deployments_kubernetes import (
    kubernetes_problems,
    kubernetes_settings,
    manifests_for,
)
from mlform.pulumi_engine.program_kubernetes import _check_unique, revealed
from mlform.pulumi_engine.provisioner import engine_target
from mlform.rollout.journal import Served
from mlform.secrets import redact_token, reveal
from mlform.spec.load import validate_spec

API = Address.parse("deployment.api")
KEY = b"unit-test-hmac-key"
CLEAR = "clear-value-never-recorded"
TOKEN = redact_token("api_token", CLEAR, KEY)
SERVED = [("churn-v1", "model.churn@v1", 100)]


def _lookup(name: str) -> str | None:
    return CLEAR if name == "api_token" else None


def _reveal(obj: Any) -> Any:
    return reveal(obj, _lookup, key=KEY)


def _settings(**target: Any) -> dict[str, Any]:
    return {
        "project": {"name": "churn", "team": "risk"},
        "resources": {"quotas": {"risk": {"gpus": 3}}},
        "target": {"type": "kubernetes", **target},
    }


def _context(tmp_path: Path, settings: dict[str, Any], stack: str = "dev") -> ProviderContext:
    return ProviderContext(
        project_dir=tmp_path,
        state_dir=tmp_path / ".mlform",
        stack=stack,
        target=str(settings["target"]["type"]),
        settings=settings,
        reveal=_reveal,
    )


def _config(**extra: Any) -> dict[str, Any]:
    return {"model": "churn", "replicas": 1, "strategy": {"type": "rolling"}, **extra}


def _by_kind(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {str(m.body["kind"]): m for m in manifests}


# -- env -----------------------------------------------------------------------------------


def test_env_splits_into_a_config_map_and_a_secret_holding_the_token(tmp_path: Path) -> None:
    env = {"LOG_LEVEL": "debug", "API_TOKEN": f"Bearer {TOKEN}"}
    found = _by_kind(manifests_for(API, _config(env=env), _context(tmp_path, _settings()), SERVED))
    config_map, secret = found["ConfigMap"], found["Secret"]
    assert config_map.name == "configmap-env" and secret.name == "secret-env"
    assert config_map.body["metadata"]["name"] == secret.body["metadata"]["name"] == "api-env"
    assert config_map.body["data"] == {"LOG_LEVEL": "debug"}
    assert secret.body["stringData"] == {"API_TOKEN": f"Bearer {TOKEN}"}
    assert CLEAR not in repr([m.body for m in found.values()])
    pod = found["Deployment"].body["spec"]["template"]
    server = pod["spec"]["containers"][0]
    assert server["envFrom"] == [
        {"configMapRef": {"name": "api-env"}},
        {"secretRef": {"name": "api-env"}},
    ]
    assert "envFrom" not in pod["spec"]["initContainers"][0]  # the pull needs none of it
    digest = pod["metadata"]["annotations"][k.ENV_DIGEST_KEY]
    # Another secret value: another token, another Secret and digest (so the pods roll).
    other = {**env, "API_TOKEN": f"Bearer {redact_token('api_token', 'other', KEY)}"}
    again = _by_kind(
        manifests_for(API, _config(env=other), _context(tmp_path, _settings()), SERVED)
    )
    assert again["Secret"].body != secret.body and again["ConfigMap"].body == config_map.body
    changed = again["Deployment"].body["spec"]["template"]["metadata"]["annotations"]
    assert changed[k.ENV_DIGEST_KEY] != digest


def test_no_env_no_objects_and_only_the_kinds_needed(tmp_path: Path) -> None:
    context = _context(tmp_path, _settings())
    plain = manifests_for(API, _config(), context, SERVED)
    assert {m.body["kind"] for m in plain} == {"Deployment", "Service"}
    server = _by_kind(plain)["Deployment"].body["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in server
    only_plain = _by_kind(manifests_for(API, _config(env={"A": "1"}), context, SERVED))
    assert "Secret" not in only_plain and "ConfigMap" in only_plain
    only_secret = _by_kind(manifests_for(API, _config(env={"A": TOKEN}), context, SERVED))
    assert "ConfigMap" not in only_secret and "Secret" in only_secret


def test_the_local_servers_get_the_env_as_tokens(tmp_path: Path) -> None:
    context = _context(tmp_path, {"project": {"name": "churn"}, "target": {"type": "local"}})
    config = _config(env={"API_TOKEN": TOKEN})
    router, server = _resources(API, config, context, [Served("churn-v1", "model.churn@v1")])
    assert dict(server.env) == {"API_TOKEN": TOKEN}  # type: ignore[union-attr]
    assert not router.env  # type: ignore[union-attr]


def test_env_names_are_checked_by_the_spec() -> None:
    data = {
        "project": {"name": "churn"},
        "models": {},
        "deployments": {"api": {"model": "churn", "env": {"1BAD-NAME": "x"}}},
    }
    _, problems = validate_spec(data)
    assert any(p.key and p.key.startswith("deployments.api.env") for p in problems), problems


def test_render_warns_that_a_rendered_secret_holds_the_value(tmp_path: Path) -> None:
    settings = {"project": {"name": "churn"}, "target": {"type": "render"}}
    found = kubernetes_problems(
        API, _config(env={"API_TOKEN": TOKEN}), _context(tmp_path, settings), applying=False
    )
    assert [(d.severity, d.key) for d in found] == [
        (Severity.WARNING, "deployments.api.env.API_TOKEN")
    ]
    assert (
        kubernetes_problems(API, _config(env={"API_TOKEN": TOKEN}), _context(tmp_path, _settings()))
        == []
    )


# -- the program reveals Secrets only ------------------------------------------------------


def _secret(data: dict[str, str]) -> Manifest:
    return k.secret(API, "api-env", data, namespace="ns", project="churn", key="env")


def test_the_program_reveals_a_secret_and_nothing_else() -> None:
    recorded = _secret({"API_TOKEN": f"Bearer {TOKEN}"})
    clear = revealed(recorded, _reveal)
    assert clear.body["stringData"] == {"API_TOKEN": f"Bearer {CLEAR}"}
    assert recorded.body["stringData"] == {"API_TOKEN": f"Bearer {TOKEN}"}  # unchanged
    assert clear.body["metadata"] == recorded.body["metadata"]
    config_map = k.config_map(API, "api-env", "ns", {"A": TOKEN}, project="churn")
    assert revealed(config_map, _reveal) is config_map  # a token elsewhere stays a token
    plain = _secret({"A": "b"})
    assert revealed(plain, None) is plain
    with pytest.raises(ValueError, match="no way to reveal"):
        revealed(recorded, None)


# -- namespace per stack, GPU quota per team -----------------------------------------------


def test_the_stack_namespace_is_project_and_stack_unless_named(tmp_path: Path) -> None:
    own = kubernetes_settings(_config(), _context(tmp_path, _settings(), stack="staging"))
    assert own.namespace == "churn-staging"
    named = kubernetes_settings(_config(), _context(tmp_path, _settings(namespace="shared")))
    assert named.namespace == "shared"
    render = {"project": {"name": "churn"}, "target": {"type": "render"}}
    assert kubernetes_settings(_config(), _context(tmp_path, render)).namespace == "default"
    odd = {**_settings(), "project": {"name": "Churn_Model"}}
    name = ks.stack_namespace(odd, "Prod").name
    assert k.check_dns_label(name) == name and name.startswith("churn-model-prod-")


def test_stack_objects_namespace_labels_and_gpu_quota() -> None:
    objects = ks.stack_objects(_settings(), "dev")
    assert list(objects) == [ks.NAMESPACE_LOGICAL_NAME, ks.QUOTA_LOGICAL_NAME]
    namespace = objects[ks.NAMESPACE_LOGICAL_NAME]
    assert namespace["metadata"] == {
        "labels": {
            "app.kubernetes.io/managed-by": "mlform",
            "app.kubernetes.io/part-of": "churn",
            ks.STACK_KEY: "dev",
            ks.TEAM_KEY: "risk",
        },
        "name": "churn-dev",
    }
    quota = objects[ks.QUOTA_LOGICAL_NAME]
    assert quota["metadata"]["namespace"] == "churn-dev"
    assert quota["metadata"]["name"] == "churn-dev-gpus"
    assert quota["spec"] == {"hard": {"requests.nvidia.com/gpu": "3"}}
    # A named namespace is not ours: the quota still goes there, the Namespace does not.
    shared = ks.stack_objects(_settings(namespace="shared"), "dev")
    assert list(shared) == [ks.QUOTA_LOGICAL_NAME]
    assert shared[ks.QUOTA_LOGICAL_NAME]["metadata"]["namespace"] == "shared"
    # No quota for the project's team (or no team): no ResourceQuota.
    other = {**_settings(), "resources": {"quotas": {"vision": {"gpus": 2}}}}
    assert list(ks.stack_objects(other, "dev")) == [ks.NAMESPACE_LOGICAL_NAME]
    assert ks.foreign_quota_teams(other) == ["vision"]
    assert ks.stack_objects({**_settings(), "target": {"type": "render"}}, "dev") == {}


def test_engine_target_carries_namespace_stack_objects_and_reveal(tmp_path: Path) -> None:
    settings = _settings(wait_for_ready=False)
    target = engine_target(settings["target"], tmp_path, settings=settings, stack="dev")
    assert target.namespace == "churn-dev" and target.skip_await
    assert dict(target.stack_objects) == ks.stack_objects(settings, "dev")
    assert target.reveal is not None
    named = _settings(namespace="shared")
    assert engine_target(named["target"], tmp_path, settings=named).namespace == "shared"


def test_a_manifest_cannot_declare_the_stack_namespace_again() -> None:
    objects = ks.stack_objects(_settings(), "dev")
    duplicate = k.namespace(API, "churn-dev", project="churn")
    with pytest.raises(ValueError, match="same Kubernetes object"):
        _check_unique([duplicate], objects)


def test_validate_warns_about_a_quota_of_another_team() -> None:
    data = {
        "project": {"name": "churn", "team": "risk"},
        "resources": {"quotas": {"risk": {"gpus": 2}, "vision": {"gpus": 8}}},
        "target": {"type": "kubernetes"},
    }
    spec, problems = validate_spec(data)
    assert spec is not None
    assert [(p.severity, p.key) for p in problems] == [
        (Severity.WARNING, "resources.quotas.vision")
    ]
    assert "team vision" in problems[0].summary
    _, local = validate_spec({**data, "target": {"type": "local"}})
    assert local == []


# -- artifact store ------------------------------------------------------------------------


def test_the_artifact_store_defaults_to_the_stack_registry_and_is_mounted(tmp_path: Path) -> None:
    context = _context(tmp_path, _settings())
    found = kubernetes_settings(_config(), context)
    registry = (tmp_path / ".mlform").resolve() / "registry"
    assert found.artifact_store == f"file://{registry}" and found.artifact_secret is None
    pod = _by_kind(manifests_for(API, _config(), context, SERVED))["Deployment"].body["spec"]
    spec = pod["template"]["spec"]
    pull = spec["initContainers"][0]
    assert pull["command"][5] == f"file://{registry}"
    assert {"mountPath": str(registry), "name": "artifact-store", "readOnly": True} in pull[
        "volumeMounts"
    ]
    assert {
        "hostPath": {"path": str(registry), "type": "DirectoryOrCreate"},
        "name": "artifact-store",
    } in spec["volumes"]
    assert all(m["name"] != "artifact-store" for m in spec["containers"][0]["volumeMounts"])


def test_a_remote_store_and_its_secret_reach_the_pull(tmp_path: Path) -> None:
    settings = _settings(artifact_store="s3://models/churn", artifact_secret="store-creds")
    context = _context(tmp_path, settings)
    spec = _by_kind(manifests_for(API, _config(), context, SERVED))["Deployment"].body["spec"]
    pod = spec["template"]["spec"]
    pull = pod["initContainers"][0]
    assert pull["command"][5] == "s3://models/churn"
    assert pull["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert all(v["name"] != "artifact-store" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        ("ftp://host/registry", "schemes"),
        ("file://relative/path", "absolute"),
        ("s3://", "schemes"),
    ],
)
def test_a_bad_artifact_store_names_the_key(store: str, problem: str) -> None:
    data = {"project": {"name": "churn"}, "target": {"type": "kubernetes", "artifact_store": store}}
    spec, problems = validate_spec(data)
    assert spec is None
    assert [p.key for p in problems] == ["target.artifact_store"]
    assert problem in str(problems[0])


def test_namespace_defaults_to_none_in_the_spec() -> None:
    spec, _ = validate_spec({"project": {"name": "churn"}, "target": {"type": "kubernetes"}})
    assert spec is not None
    assert spec.target.model_dump()["namespace"] is None  # resolved per stack

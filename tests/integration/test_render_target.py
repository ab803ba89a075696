"""The render target end to end: the real Pulumi engine and kubernetes provider, no cluster.

Goes through :class:`mlform.pulumi_engine.engine.Engine` on a ``file://`` backend; the
provider writes one YAML file per object (``1-manifest/<apiVersion>-<kind>-<namespace>-
<name>.yaml``, ``default`` as the namespace of cluster-scoped objects).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import InfraOp, Manifest
from mlform.pulumi_engine.engine import Engine
from mlform.pulumi_engine.target import EngineTarget

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "1.33.0"
API = Address.parse("deployment.api")
PLATFORM = Address.parse("deployment.platform")
# A placeholder, not a secret: it shows where a Secret's value ends up.
PLACEHOLDER = "placeholder-value-rendered-in-plain-text"


def _manifests(replicas: int = 2) -> list[Manifest]:
    secret = Manifest(
        owner=API,
        name="secret",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api-settings", "namespace": "ml"},
            "type": "Opaque",
            "stringData": {"SETTING": PLACEHOLDER},
        },
    )
    return [
        k.namespace(PLATFORM, "ml", {"team": "risk"}, project="churn"),
        *k.workload(
            API,
            name="api",
            namespace="ml",
            image="registry.example/churn-api:3",
            project="churn",
            port=8080,
            replicas=replicas,
            env={"MODEL_URI": "s3://models/churn/3"},
            resources=k.Resources(cpu=0.5, memory="2Gi", gpus=1),
            tolerations=[k.Toleration(key="nvidia.com/gpu", operator="Exists")],
        ),
        k.config_map(API, "api-config", "ml", {"LOG_LEVEL": "info"}, project="churn"),
        k.resource_quota(PLATFORM, "gpu", "ml", 4, project="churn"),
        secret,
    ]


def _file_name(manifest: Manifest) -> str:
    body = manifest.body
    namespace = body["metadata"].get("namespace", "default")
    api_version = str(body["apiVersion"]).replace("/", "_")
    kind, name = str(body["kind"]).lower(), body["metadata"]["name"]
    return f"1-manifest/{api_version}-{kind}-{namespace}-{name}.yaml"


def _as_rendered(manifest: Manifest) -> dict[str, Any]:
    """The provider writes a Secret's ``stringData`` as base64 ``data`` (not encrypted)."""
    body = manifest.inputs()
    if body["kind"] == "Secret" and "stringData" in body:
        plain = body.pop("stringData")
        body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}
    return body


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _engine(root: Path, toolchain: Any) -> Engine:
    target = EngineTarget(type="render", render_directory=root / "rendered")
    return Engine(
        work_dir=root / "engine",
        project="render-test",
        stack="dev",
        target=target,
        toolchain=toolchain,
    )


def test_render_writes_valid_deterministic_manifests_and_tracks_changes(
    tmp_path: Path, pulumi_kubernetes_toolchain: Any
) -> None:
    engine = _engine(tmp_path / "one", pulumi_kubernetes_toolchain)
    out = tmp_path / "one" / "rendered"
    manifests = _manifests()
    expected = {_file_name(m): m for m in manifests}

    preview = engine.preview(manifests)
    assert {c.logical_name: c.op for c in preview.changes} == {
        m.logical_name: InfraOp.CREATE for m in manifests
    }
    assert not out.exists() or _files(out) == {}  # a preview writes nothing

    created = engine.up(manifests)
    assert {c.logical_name: c.op for c in created.changes} == {
        m.logical_name: InfraOp.CREATE for m in manifests
    }
    first = _files(out)
    assert set(first) == set(expected)
    for name, content in first.items():
        documents = list(yaml.safe_load_all(content))
        assert len(documents) == 1
        kubernetes_validate.validate(documents[0], KUBERNETES_VERSION, strict=True)
        assert documents[0] == _as_rendered(expected[name])  # exactly what the builders made

    # Secrets: readable in the rendered file (documented), encrypted in Pulumi's state.
    secret = yaml.safe_load(first[_file_name(manifests[-1])])
    assert base64.b64decode(secret["data"]["SETTING"]).decode() == PLACEHOLDER
    state = b"".join(p.read_bytes() for p in engine.backend_dir.rglob("*.json*") if p.is_file())
    assert b"render-test" in state
    assert PLACEHOLDER.encode() not in state
    assert secret["data"]["SETTING"].encode() not in state

    # Re-rendering: a no-op up and a fresh stack give byte-identical files.
    again = engine.up(manifests)
    assert again.changed() == ()
    assert _files(out) == first
    fresh = _engine(tmp_path / "two", pulumi_kubernetes_toolchain)
    fresh.up(manifests)
    assert _files(tmp_path / "two" / "rendered") == first

    # A changed replica count is an update of the deployment alone, under its owner.
    scaled = _manifests(replicas=3)
    preview = engine.preview(scaled)
    [change] = preview.changed()
    assert (change.owner, change.name, change.op) == (API, "deployment", InfraOp.UPDATE)
    assert change.type == "kubernetes:apps/v1:Deployment"
    assert _files(out) == first  # previews never write
    updated = engine.up(scaled)
    assert [(c.logical_name, c.op) for c in updated.changed()] == [
        ("deployment.api/deployment", InfraOp.UPDATE)
    ]
    second = _files(out)
    deployment_file = _file_name(manifests[1])
    assert {n for n in first if first[n] != second[n]} == {deployment_file}
    assert yaml.safe_load(second[deployment_file])["spec"]["replicas"] == 3

    # Destroy removes every rendered file.
    destroyed = engine.destroy()
    assert {c.logical_name: c.op for c in destroyed.changes} == {
        m.logical_name: InfraOp.DELETE for m in manifests
    }
    assert _files(out) == {}
    fresh.destroy()
    assert _files(tmp_path / "two" / "rendered") == {}

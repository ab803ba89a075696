"""The kubernetes target's checks of a deployment config and its runtime's replica splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Severity
from mlform.providers.base import ProviderContext
from mlform.providers.deployments_kubernetes import (
    KubernetesRuntime,
    kubernetes_problems,
    manifests_for,
)
from mlform.rollout.journal import Served

API = Address.parse("deployment.api")


def _context(tmp_path: Path) -> ProviderContext:
    return ProviderContext(
        project_dir=tmp_path,
        state_dir=tmp_path / ".mlform",
        stack="dev",
        target="kubernetes",
        settings={"project": {"name": "churn"}, "target": {"type": "kubernetes"}},
    )


def _config(weights: list[int], metrics: list[Any], replicas: int = 4) -> dict[str, Any]:
    steps = [{"weight": w, "pause": "1s"} for w in weights]
    return {
        "model": "churn",
        "replicas": replicas,
        "resources": {"cpu": 1, "memory": "1Gi"},
        "strategy": {"type": "canary", "steps": steps, "analysis": {"metrics": metrics}},
    }


def test_an_inexact_step_is_a_warning_naming_the_step_and_the_fix(tmp_path: Path) -> None:
    found = kubernetes_problems(API, _config([10, 50, 100], []), _context(tmp_path))
    assert [(d.severity, d.key) for d in found] == [
        (Severity.WARNING, "deployments.api.strategy.steps.0.weight")
    ]
    assert "3 stable and 1 canary" in found[0].detail
    assert "about 25%" in found[0].detail and "replicas: 10" in found[0].detail


def test_analysis_metrics_and_router_strategies_are_errors(tmp_path: Path) -> None:
    metric = {"name": "success_rate", "threshold": ">= 0.99"}
    found = kubernetes_problems(API, _config([25, 100], [metric]), _context(tmp_path))
    assert [(d.severity, d.key) for d in found] == [
        (Severity.ERROR, "deployments.api.strategy.analysis.metrics")
    ]
    # validate only warns (a reviewed plan may keep its analysis); apply refuses it.
    warned = kubernetes_problems(
        API, _config([25, 100], [metric]), _context(tmp_path), applying=False
    )
    assert [(d.severity, d.key) for d in warned] == [
        (Severity.WARNING, "deployments.api.strategy.analysis.metrics")
    ]
    shadow = {"model": "churn", "strategy": {"type": "shadow", "model": "other"}}
    found = kubernetes_problems(API, shadow, _context(tmp_path))
    assert [d.key for d in found] == ["deployments.api.strategy.type"]


def test_route_turns_the_split_into_replicas(tmp_path: Path) -> None:
    runtime = KubernetesRuntime(API, _config([25, 100], []), _context(tmp_path), refresh=False)
    runtime.versions = (Served("churn-v1", "model.churn@v1"), Served("churn-v2", "model.churn@v2"))
    entries = runtime._entries({"churn-v1": 75, "churn-v2": 25})
    assert entries == [("churn-v1", "model.churn@v1", 75), ("churn-v2", "model.churn@v2", 25)]
    runtime.split = {"churn-v1": 50, "churn-v2": 50}
    objects = manifests_for(API, runtime.config, runtime.context, runtime._entries(runtime.split))
    replicas = {
        m.body["metadata"]["name"]: m.body["spec"]["replicas"]
        for m in objects
        if m.body["kind"] == "Deployment"
    }
    assert replicas == {"api-churn-v1": 2, "api-churn-v2": 2}

"""The stack-wide Kubernetes objects of the ``kubernetes`` target: its namespace and GPU quota.

They belong to the stack, not to one mlform object, so no provider declares them: the
stack's Pulumi program does (:mod:`mlform.pulumi_engine.program_kubernetes`), whenever it
declares at least one object, under logical names that name no owner (``stack/namespace``,
``stack/gpu-quota``). Every object in the namespace depends on it, so Pulumi creates it
first and deletes it last, with the stack's last object.

- **Namespace per stack**: without ``target.namespace`` the stack's objects go into
  ``<project>-<stack>`` (a DNS label, :func:`~mlform.infra.kubernetes.dns_name`), which the
  program creates, labelled ``app.kubernetes.io/managed-by: mlform``,
  ``app.kubernetes.io/part-of: <project>``, ``mlform.dev/stack`` and ``mlform.dev/team``
  (``project.team``). A namespace named in ``target.namespace`` is used as it is: it may
  be shared, so mlform neither creates nor deletes it.
- **GPU quota per team**: the namespace belongs to ``project.team``; when
  ``resources.quotas[project.team]`` exists, a ResourceQuota ``<project>-<stack>-gpus``
  caps ``requests.nvidia.com/gpu`` in it. Kubernetes counts extended resources such as GPUs
  by their requests only (a GPU limit sets the request equal; a ``limits.nvidia.com/gpu``
  quota item would never be counted), so that one item is the whole cap. In a shared
  namespace each stack of the team places the same cap, which the namespace's usage must
  fit either way. A quota of another team cannot be placed in this stack's namespace
  (``mlform validate`` warns: :func:`foreign_quota_teams`).

Pure: settings in, names and object bodies out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlform.infra.kubernetes import MANAGED_BY, _label_value, dns_name, gpu_quota_spec

__all__ = [
    "NAMESPACE_LOGICAL_NAME",
    "QUOTA_LOGICAL_NAME",
    "STACK_KEY",
    "TEAM_KEY",
    "StackNamespace",
    "foreign_quota_teams",
    "stack_namespace",
    "stack_objects",
]

NAMESPACE_LOGICAL_NAME = "stack/namespace"
QUOTA_LOGICAL_NAME = "stack/gpu-quota"
STACK_KEY = "mlform.dev/stack"
TEAM_KEY = "mlform.dev/team"
# The namespace objects go into on targets that do not place them in a cluster (render).
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class StackNamespace:
    """The namespace of a stack's objects; ``managed``: mlform creates and deletes it."""

    name: str
    managed: bool


def _project(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    return settings.get("project") or {}


def stack_namespace(settings: Mapping[str, Any], stack: str) -> StackNamespace:
    """The stack's namespace (module docstring); ``default``, unmanaged, off kubernetes."""
    target = settings.get("target") or {}
    if target.get("type") != "kubernetes":
        return StackNamespace(DEFAULT_NAMESPACE, managed=False)
    explicit = target.get("namespace")
    if explicit:
        return StackNamespace(str(explicit), managed=False)
    project = str(_project(settings).get("name", "mlform"))
    return StackNamespace(dns_name(project, stack), managed=True)


def _labels(settings: Mapping[str, Any], stack: str) -> dict[str, str]:
    project = str(_project(settings).get("name", "mlform"))
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": _label_value(project),
        STACK_KEY: _label_value(stack),
    }
    team = _project(settings).get("team")
    if team:
        labels[TEAM_KEY] = _label_value(str(team))
    return dict(sorted(labels.items()))


def team_gpu_quota(settings: Mapping[str, Any]) -> int | None:
    """``resources.quotas[project.team].gpus``; None without a team or a quota for it."""
    team = _project(settings).get("team")
    quotas = (settings.get("resources") or {}).get("quotas") or {}
    quota = quotas.get(team) if team else None
    return None if quota is None else int(quota["gpus"])


def foreign_quota_teams(settings: Mapping[str, Any]) -> list[str]:
    """Teams in ``resources.quotas`` other than ``project.team`` (no place on this stack)."""
    team = _project(settings).get("team")
    quotas = (settings.get("resources") or {}).get("quotas") or {}
    return [name for name in quotas if name != team]


def stack_objects(settings: Mapping[str, Any], stack: str) -> dict[str, dict[str, Any]]:
    """Logical name -> body of the stack-wide objects on the kubernetes target (or none)."""
    target = settings.get("target") or {}
    if target.get("type") != "kubernetes":
        return {}
    namespace = stack_namespace(settings, stack)
    labels = _labels(settings, stack)
    objects: dict[str, dict[str, Any]] = {}
    if namespace.managed:
        objects[NAMESPACE_LOGICAL_NAME] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"labels": labels, "name": namespace.name},
        }
    gpus = team_gpu_quota(settings)
    if gpus is not None:
        project = str(_project(settings).get("name", "mlform"))
        objects[QUOTA_LOGICAL_NAME] = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "labels": labels,
                "name": dns_name(project, stack, "gpus"),
                "namespace": namespace.name,
            },
            "spec": gpu_quota_spec(gpus),
        }
    return objects

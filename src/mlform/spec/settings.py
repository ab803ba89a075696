"""Sections that are settings rather than objects: project, resources, target, backend."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mlform.spec.base import Cpu, Labels, Memory, Name, SpecModel


class Project(SpecModel):
    name: Name
    team: str | None = None
    owner: str | None = None
    description: str | None = None
    labels: Labels = Field(default_factory=dict)


class Gpu(SpecModel):
    count: int = Field(default=1, ge=1)
    type: str | None = None


class Toleration(SpecModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Profile(SpecModel):
    cpu: Cpu = 1
    memory: Memory = "1Gi"
    gpu: Gpu | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class Quota(SpecModel):
    gpus: int = Field(ge=0)


class Resources(SpecModel):
    profiles: dict[Name, Profile] = Field(default_factory=dict)
    quotas: dict[str, Quota] = Field(default_factory=dict)


class LocalTarget(SpecModel):
    type: Literal["local"]


class KubernetesTarget(SpecModel):
    type: Literal["kubernetes"]
    context: str | None = None
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    kubeconfig: str | None = None
    # Wait for objects to become ready (Deployments available, Jobs complete) as
    # pulumi-kubernetes does by default; false for an API server without nodes (tests).
    wait_for_ready: bool = True


class RenderTarget(SpecModel):
    type: Literal["render"]
    directory: str = "rendered"


Target = Annotated[LocalTarget | KubernetesTarget | RenderTarget, Field(discriminator="type")]


class LocalBackend(SpecModel):
    type: Literal["local"]
    path: str = ".mlform"


class PostgresBackend(SpecModel):
    type: Literal["postgresql"]
    url: str = Field(min_length=1)


Backend = Annotated[LocalBackend | PostgresBackend, Field(discriminator="type")]

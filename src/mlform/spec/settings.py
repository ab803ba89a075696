"""Sections that are settings rather than objects: project, resources, target, backend."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

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


ARTIFACT_SCHEMES = ("file", "s3", "gs", "az", "http", "https")
_ARTIFACT_STORE_RE = re.compile(rf"^({'|'.join(ARTIFACT_SCHEMES)})://\S+$")
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


def check_artifact_store(uri: str) -> str:
    """``uri`` when pods can fetch model versions from it (a ``file://`` path is absolute)."""
    if not _ARTIFACT_STORE_RE.match(uri):
        raise ValueError(
            f"artifact store {uri!r} must be a URI with one of the schemes "
            f"{', '.join(ARTIFACT_SCHEMES)}, e.g. s3://bucket/mlform/registry or "
            "file:///srv/mlform/registry"
        )
    if uri.startswith("file://") and not uri.removeprefix("file://").startswith("/"):
        raise ValueError(
            f"artifact store {uri!r}: a file:// store needs an absolute path "
            "(file:///srv/mlform/registry)"
        )
    return uri


ArtifactStore = Annotated[str, AfterValidator(check_artifact_store)]


class KubernetesTarget(SpecModel):
    type: Literal["kubernetes"]
    context: str | None = None
    # None: the stack's own namespace ``<project>-<stack>``, which mlform creates and
    # deletes; a namespace named here is used as it is (it may be shared) and left alone.
    namespace: DnsLabel | None = None
    kubeconfig: str | None = None
    # Wait for objects to become ready (Deployments available, Jobs complete) as
    # pulumi-kubernetes does by default; false for an API server without nodes (tests).
    wait_for_ready: bool = True
    # Where model-pull init containers fetch versions from (None: the stack's registry,
    # ``file://<state dir>/registry``); an existing Secret whose keys become their env.
    artifact_store: ArtifactStore | None = None
    artifact_secret: DnsLabel | None = None


class RenderTarget(SpecModel):
    type: Literal["render"]
    directory: str = "rendered"
    artifact_store: ArtifactStore | None = None
    artifact_secret: DnsLabel | None = None


Target = Annotated[LocalTarget | KubernetesTarget | RenderTarget, Field(discriminator="type")]


class LocalBackend(SpecModel):
    type: Literal["local"]
    path: str = ".mlform"


class PostgresBackend(SpecModel):
    type: Literal["postgresql"]
    url: str = Field(min_length=1)


Backend = Annotated[LocalBackend | PostgresBackend, Field(discriminator="type")]

"""The root of the spec: one model per config section."""

from __future__ import annotations

from pydantic import Field

from mlform.spec.base import Name, SpecModel
from mlform.spec.data import DataSpec
from mlform.spec.deployments import DeploymentSpec
from mlform.spec.features import FeatureSpec
from mlform.spec.models import ModelSpec
from mlform.spec.monitors import MonitorSpec
from mlform.spec.policies import Policies
from mlform.spec.settings import Backend, LocalBackend, LocalTarget, Project, Resources, Target

OBJECT_SECTIONS = ("data", "features", "models", "deployments", "monitors")
SETTING_SECTIONS = ("project", "resources", "policies", "target", "backend")


class SystemSpec(SpecModel):
    project: Project
    data: dict[Name, DataSpec] = Field(default_factory=dict)
    features: dict[Name, FeatureSpec] = Field(default_factory=dict)
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    deployments: dict[Name, DeploymentSpec] = Field(default_factory=dict)
    monitors: dict[Name, MonitorSpec] = Field(default_factory=dict)
    policies: Policies = Field(default_factory=Policies)
    target: Target = Field(default_factory=lambda: LocalTarget(type="local"))
    backend: Backend = Field(default_factory=lambda: LocalBackend(type="local"))

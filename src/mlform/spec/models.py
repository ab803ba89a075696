"""The ``models`` section: scikit-learn or PyTorch models with gates, fairness and a card."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlform.spec.base import (
    Comparison,
    Duration,
    Labels,
    Name,
    SpecModel,
    TargetSpec,
    target_block,
)


class ChampionGate(SpecModel):
    metric: str = Field(min_length=1)
    tolerance: float = Field(default=0.0, ge=0)


class Gates(BaseModel):
    """Evaluation gates: ``metric: "<op> <number>"`` plus optional ``must_beat_champion``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Every other key is a metric name whose value is a comparison like ">= 0.95".
    __pydantic_extra__: dict[str, Comparison] = Field(init=False)

    must_beat_champion: ChampionGate | None = None


class Fairness(SpecModel):
    sensitive: Annotated[list[str], Field(min_length=1)]
    min_ratio: float = Field(default=0.8, gt=0, le=1)


class Card(SpecModel):
    intended_use: str | None = None
    limitations: str | None = None
    ethical_considerations: str | None = None
    caveats: str | None = None
    owners: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)


class Approval(SpecModel):
    by: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    columns: list[str] = Field(default_factory=list)
    date: dt.date | None = None


class EarlyStopping(SpecModel):
    metric: str = "val_loss"
    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class Trainer(SpecModel):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    optimizer: TargetSpec = Field(
        default_factory=lambda: target_block("torch.optim.AdamW", lr=0.001)
    )
    scheduler: TargetSpec | None = None
    loss: str = "cross_entropy"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    deterministic: bool = True
    early_stopping: EarlyStopping | None = None
    checkpoint_every: int | None = Field(default=None, ge=1)


class Training(SpecModel):
    """Where a model trains: in the ``mlform apply`` process, or as a Kubernetes Job.

    ``auto`` is ``cluster`` on the kubernetes target and ``local`` elsewhere. ``nodes`` and
    ``procs_per_node`` make a torch model's Job an Indexed Job running ``torchrun`` (checked
    against the framework and target by the model provider, which knows both).
    ``procs_per_node`` left out means one process per GPU of the resource profile, else 1.
    ``image`` defaults to the deployments' image (``mlform/<project>:latest``).
    """

    where: Literal["auto", "local", "cluster"] = "auto"
    nodes: int = Field(default=1, ge=1)
    procs_per_node: int | None = Field(default=None, ge=1)
    timeout: Duration = "1h"
    image: str | None = Field(default=None, min_length=1)


class _ModelBase(SpecModel):
    description: str | None = None
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)
    task: Literal["classification", "regression"]
    features: Name
    exclude_columns: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    gates: Gates = Field(default_factory=Gates)
    fairness: Fairness | None = None
    card: Card | None = None
    resources: Name | None = None
    approvals: list[Approval] = Field(default_factory=list)
    training: Training = Field(default_factory=Training)


class SklearnModel(_ModelBase):
    framework: Literal["sklearn"]
    estimator: TargetSpec


class TorchModel(_ModelBase):
    framework: Literal["torch"]
    module: TargetSpec
    trainer: Trainer = Field(default_factory=Trainer)


ModelSpec = Annotated[SklearnModel | TorchModel, Field(discriminator="framework")]

"""The ``features`` section: feature sets built from data sources by SQL and declarative ops."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlform.spec.base import Duration, Labels, Name, SpecModel
from mlform.spec.data import ColumnType

Columns = Annotated[list[str], Field(min_length=1)]


class Derive(SpecModel):
    op: Literal["derive"]
    column: str = Field(min_length=1)
    expression: str = Field(min_length=1)


class OneHot(SpecModel):
    op: Literal["one_hot"]
    columns: Columns


class Drop(SpecModel):
    op: Literal["drop"]
    columns: Columns


class Select(SpecModel):
    op: Literal["select"]
    columns: Columns


class Rename(SpecModel):
    op: Literal["rename"]
    mapping: dict[str, str] = Field(min_length=1)


class FillNa(SpecModel):
    op: Literal["fillna"]
    columns: Columns
    value: str | int | float | bool


class Filter(SpecModel):
    op: Literal["filter"]
    expression: str = Field(min_length=1)


class Cast(SpecModel):
    op: Literal["cast"]
    columns: Columns
    type: ColumnType


class Log1p(SpecModel):
    op: Literal["log1p"]
    columns: Columns


class Standardize(SpecModel):
    op: Literal["standardize"]
    columns: Columns


Transform = Annotated[
    Derive | OneHot | Drop | Select | Rename | FillNa | Filter | Cast | Log1p | Standardize,
    Field(discriminator="op"),
]


class Split(SpecModel):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    validation_size: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0
    # One column, or several whose combinations are kept in proportion (e.g. label and a
    # sensitive column, so every group has the same class mix in each split).
    stratify: str | list[str] | None = None

    @model_validator(mode="after")
    def _room_for_training(self) -> Split:
        if self.test_size + self.validation_size >= 1:
            raise ValueError("test_size + validation_size must leave rows to train on (< 1)")
        return self


class OfflineStore(SpecModel):
    format: Literal["parquet"] = "parquet"
    path: str | None = None


class OnlineStore(SpecModel):
    type: Literal["sqlite", "duckdb", "redis"] = "sqlite"
    path: str | None = None
    url: str | None = None
    ttl: Duration | None = None


class FeatureSpec(SpecModel):
    description: str | None = None
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)
    entity: Columns
    sources: Annotated[list[Name], Field(min_length=1)]
    query: str | None = None
    transforms: list[Transform] = Field(default_factory=list)
    label: str | None = None
    sensitive: list[str] = Field(default_factory=list)
    split: Split = Field(default_factory=Split)
    offline_store: OfflineStore = Field(default_factory=OfflineStore)
    online_store: OnlineStore | None = None

    @model_validator(mode="after")
    def _query_for_many_sources(self) -> FeatureSpec:
        if self.query is None and len(self.sources) > 1:
            raise ValueError("a feature set with several sources needs a query that joins them")
        return self

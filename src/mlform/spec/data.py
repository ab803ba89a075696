"""The ``data`` section: named data sources (file, sql, sklearn) with a declared schema."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mlform.spec.base import Duration, Labels, SpecModel

ColumnType = Literal["int64", "float64", "string", "bool", "category", "timestamp", "date"]


class Column(SpecModel):
    type: ColumnType
    nullable: bool = True
    pii: bool = False
    description: str | None = None
    values: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _values_only_for_category(self) -> Column:
        if self.values is not None and self.type != "category":
            raise ValueError("values is only allowed for columns of type category")
        return self


class Schema(SpecModel):
    columns: dict[str, Column] = Field(default_factory=dict)
    strict: bool = False


class Encryption(SpecModel):
    at_rest: bool = True
    key: str | None = None


class Freshness(SpecModel):
    column: str | None = None
    max_age: Duration


class _DataBase(SpecModel):
    description: str | None = None
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)
    schema_: Schema | None = Field(default=None, alias="schema")
    retention_days: int | None = Field(default=None, ge=1)
    encryption: Encryption | None = None
    freshness: Freshness | None = None


class FileData(_DataBase):
    kind: Literal["file"]
    path: str = Field(min_length=1)
    format: Literal["csv", "parquet"]

    @model_validator(mode="before")
    @classmethod
    def _infer_format(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("format") is None
            and isinstance(data.get("path"), str)
        ):
            suffix = PurePosixPath(data["path"]).suffix.lower()
            inferred = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
            if inferred is not None:
                return {**data, "format": inferred}
        return data


class SqlData(_DataBase):
    kind: Literal["sql"]
    engine: Literal["sqlite", "postgresql", "duckdb"]
    url: str | None = None
    path: str | None = None
    query: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_location(self) -> SqlData:
        if (self.url is None) == (self.path is None):
            raise ValueError("set exactly one of url (postgresql) or path (sqlite, duckdb)")
        if self.engine == "postgresql" and self.url is None:
            raise ValueError("engine postgresql needs url: postgresql://user@host/db")
        return self


class SklearnData(_DataBase):
    kind: Literal["sklearn"]
    dataset: Literal["breast_cancer", "iris", "wine", "diabetes", "digits"]


DataSpec = Annotated[FileData | SqlData | SklearnData, Field(discriminator="kind")]

"""The data provider against real files, SQLite and DuckDB databases and sklearn datasets."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from example_project import example_config

from mlform.addresses import Address
from mlform.diagnostics import Severity
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    ProviderContext,
    ReadRequest,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.data import DataProvider
from mlform.providers.testing import ProviderConformance

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)

PATIENTS: dict[str, Any] = example_config("data/patients.yaml")
TUMORS: dict[str, Any] = example_config("data/tumors.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "data" / "patients.csv", tmp_path / "data" / "patients.csv")
    return tmp_path


@pytest.fixture
def context(project: Path) -> ProviderContext:
    return ProviderContext(project_dir=project, state_dir=project / ".mlform", stack="dev")


def apply(
    config: dict[str, Any], context: ProviderContext, name: str = "patients", now: datetime = NOW
) -> ApplyResult:
    address = Address.parse(f"data.{name}")
    request = ApplyRequest(address, "create", config, None, {}, {}, context)
    return DataProvider(now=lambda: now).create(request)


def failure(config: dict[str, Any], context: ProviderContext, name: str = "patients") -> Any:
    with pytest.raises(StepFailed) as caught:
        apply(config, context, name)
    return caught.value.diagnostic


class TestDataProviderConformance(ProviderConformance):
    @pytest.fixture
    def provider(self) -> DataProvider:
        return DataProvider(now=lambda: NOW)

    @pytest.fixture
    def address(self) -> Address:
        return Address.parse("data.patients")

    @pytest.fixture
    def valid_config(self) -> dict[str, Any]:
        return copy.deepcopy(PATIENTS)

    @pytest.fixture
    def invalid_config(self) -> dict[str, Any]:
        return {"kind": "file", "path": "data/missing.csv", "format": "csv"}

    @pytest.fixture
    def upstream_outputs(self) -> dict[str, Any]:
        return {}


def test_csv_file_outputs_and_snapshot(project: Path, context: ProviderContext) -> None:
    result = apply(copy.deepcopy(PATIENTS), context)
    out = result.outputs
    assert result.diagnostics == ()
    assert out["rows"] == 569
    assert out["columns"]["sample_id"] == "int64"
    assert out["columns"]["registered_at"].startswith("timestamp")
    source = (project / "data" / "patients.csv").read_bytes()
    assert out["content_sha256"] == hashlib.sha256(source).hexdigest()
    snapshot = Path(out["snapshot"])
    assert snapshot.parent == context.artifact_dir / "data" / "patients"
    assert pq.read_table(snapshot).num_rows == 569
    assert out["freshness"] == {
        "column": "registered_at",
        "max_age": "3650d",
        "latest": "2025-08-22T15:40:00+00:00",
        "stale": False,
    }
    mtime = snapshot.stat().st_mtime_ns
    again = apply(copy.deepcopy(PATIENTS), context)
    assert again.outputs == out
    assert snapshot.stat().st_mtime_ns == mtime  # content-addressed: reused, not rewritten


def test_parquet_file(project: Path, context: ProviderContext) -> None:
    pq.write_table(pa_csv.read_csv(project / "data" / "patients.csv"), project / "p.parquet")
    config = {**copy.deepcopy(PATIENTS), "path": "p.parquet", "format": "parquet"}
    assert apply(config, context).outputs["rows"] == 569


def test_stale_data_is_a_warning_not_a_failure(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    config["freshness"]["max_age"] = "30d"
    result = apply(config, context)
    assert result.status == "applied"
    assert result.outputs["freshness"]["stale"] is True
    (warning,) = result.diagnostics
    assert warning.severity is Severity.WARNING
    assert warning.key == "data.patients.freshness.max_age"
    assert "2025-08-22" in warning.summary


def test_missing_declared_column(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    config["schema"]["columns"]["weight"] = {"type": "float64"}
    diagnostic = failure(config, context)
    assert diagnostic.key == "data.patients.schema.columns.weight"
    assert "missing" in diagnostic.summary
    assert "sample_id" in diagnostic.detail


def test_incompatible_type_names_found_and_declared(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    config["schema"]["columns"]["age"] = {"type": "timestamp"}
    diagnostic = failure(config, context)
    assert diagnostic.key == "data.patients.schema.columns.age"
    assert "int64" in diagnostic.summary and "timestamp" in diagnostic.summary


def test_nulls_in_non_nullable_column(project: Path, context: ProviderContext) -> None:
    path = project / "data" / "patients.csv"
    lines = path.read_text().splitlines()
    lines[5] = "," + lines[5].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    diagnostic = failure(copy.deepcopy(PATIENTS), context)
    assert diagnostic.key == "data.patients.schema.columns.sample_id"
    assert "1 null" in diagnostic.summary


def test_category_values_outside_declared(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    config["schema"]["columns"]["region"]["values"] = ["north", "south"]
    diagnostic = failure(config, context)
    assert diagnostic.key == "data.patients.schema.columns.region"
    assert "'east'" in diagnostic.detail and "'west'" in diagnostic.detail


def test_strict_schema_rejects_undeclared_columns(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    del config["schema"]["columns"]["email"]
    config["schema"]["columns"]["age"] = {"type": "string"}
    diagnostic = failure(config, context)
    assert diagnostic.key == "data.patients.schema.columns.age"  # first problem first
    assert "data.patients.schema.columns: " in diagnostic.detail  # the others are named
    assert "email" in diagnostic.detail


def test_sqlite_query_parses_text_timestamps(project: Path, context: ProviderContext) -> None:
    db = project / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER, amount REAL, at TEXT)")
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?)",
        [(1, 9.5, "2025-12-30 10:00:00"), (2, 3.0, "2025-12-31 11:00:00"), (3, 1.0, None)],
    )
    con.commit()
    con.close()
    config = {
        "kind": "sql",
        "engine": "sqlite",
        "path": "shop.db",
        "query": "SELECT * FROM orders WHERE id < 3",
        "schema": {"columns": {"at": {"type": "timestamp"}, "id": {"type": "int64"}}},
        "freshness": {"column": "at", "max_age": "2d"},
    }
    result = apply(config, context, "orders")
    assert result.outputs["rows"] == 2
    assert result.outputs["columns"] == {"id": "int64", "amount": "double", "at": "timestamp[us]"}
    assert result.outputs["freshness"]["stale"] is False
    provider = DataProvider(now=lambda: NOW)
    address = Address.parse("data.orders")
    con = sqlite3.connect(db)
    con.execute("UPDATE orders SET amount = 10 WHERE id = 1")
    con.commit()
    con.close()
    read = provider.read(ReadRequest(address, config, result.outputs, context))
    assert read.outputs is not None
    assert read.outputs["content_sha256"] != result.outputs["content_sha256"]
    assert "content changed" in read.diagnostics[0].summary


def test_sqlite_bad_query_names_the_query_key(project: Path, context: ProviderContext) -> None:
    sqlite3.connect(project / "empty.db").close()
    config = {"kind": "sql", "engine": "sqlite", "path": "empty.db", "query": "SELECT * FROM t"}
    diagnostic = failure(config, context, "orders")
    assert diagnostic.key == "data.orders.query"
    assert "no such table" in diagnostic.detail


def test_duckdb_query(project: Path, context: ProviderContext) -> None:
    with duckdb.connect(str(project / "wh.duckdb")) as con:
        con.execute(
            "CREATE TABLE t AS SELECT range AS id, CAST(range AS DOUBLE) * 1.5 AS v FROM range(10)"
        )
    config = {"kind": "sql", "engine": "duckdb", "path": "wh.duckdb", "query": "SELECT * FROM t"}
    out = apply(config, context, "wh").outputs
    assert out["rows"] == 10
    assert out["columns"] == {"id": "int64", "v": "double"}
    assert pq.read_table(out["snapshot"]).column("v").to_pylist()[2] == 3.0


def test_sklearn_breast_cancer(context: ProviderContext) -> None:
    out = apply(copy.deepcopy(TUMORS), context, "tumors").outputs
    assert out["rows"] == 569
    names = list(out["columns"])
    assert names[0] == "sample_id" and names[-1] == "target"
    assert {"mean_radius", "worst_concave_points"} <= set(names)
    table = pq.read_table(out["snapshot"])
    assert table.column("sample_id").to_pylist() == list(range(569))
    again = apply(copy.deepcopy(TUMORS), context, "tumors").outputs
    assert again["content_sha256"] == out["content_sha256"]


def test_sklearn_iris_names_are_snake_case(context: ProviderContext) -> None:
    out = apply({"kind": "sklearn", "dataset": "iris"}, context, "iris").outputs
    assert list(out["columns"])[:3] == ["sample_id", "sepal_length_cm", "sepal_width_cm"]


def test_read_returns_none_when_source_file_is_gone(
    project: Path, context: ProviderContext
) -> None:
    result = apply(copy.deepcopy(PATIENTS), context)
    (project / "data" / "patients.csv").unlink()
    request = ReadRequest(Address.parse("data.patients"), PATIENTS, result.outputs, context)
    assert DataProvider().read(request).outputs is None


def test_delete_keeps_the_users_source_file(project: Path, context: ProviderContext) -> None:
    result = apply(copy.deepcopy(PATIENTS), context)
    address = Address.parse("data.patients")
    DataProvider().delete(DeleteRequest(address, PATIENTS, result.outputs, context))
    assert not Path(result.outputs["snapshot"]).exists()
    assert (project / "data" / "patients.csv").is_file()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"kind": "ftp"}, "data.x.kind"),
        ({"kind": "sklearn", "dataset": "mnist"}, "data.x.dataset"),
        ({"kind": "sql", "engine": "oracle", "query": "SELECT 1"}, "data.x.engine"),
        ({"kind": "sql", "engine": "sqlite", "path": "data/patients.csv"}, "data.x.query"),
        ({"kind": "sql", "engine": "postgresql", "query": "SELECT 1"}, "data.x.url"),
        ({"kind": "file", "path": "data/patients.csv", "format": "xls"}, "data.x.format"),
        (
            {**PATIENTS, "freshness": {"column": "registered_at", "max_age": "a while"}},
            "data.x.freshness.max_age",
        ),
        (
            {**PATIENTS, "schema": {"columns": {"age": {"type": "integer"}}}},
            "data.x.schema.columns.age.type",
        ),
    ],
)
def test_validate_flags_static_problems(
    config: dict[str, Any], key: str, context: ProviderContext
) -> None:
    request = ValidateRequest(Address.parse("data.x"), config, context)
    keys = [d.key for d in DataProvider().validate(request)]
    assert keys == [key]


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg installed")
def test_postgresql_without_psycopg_is_a_diagnostic(project: Path) -> None:
    revealed: list[Any] = []

    def reveal(value: Any) -> Any:
        revealed.append(value)
        return "postgresql://user:hunter2@db/x"

    context = ProviderContext(project, project / ".mlform", "dev", reveal=reveal)
    token = "postgresql://user:<secret:pg:0123456789abcdef>@db/x"
    config = {"kind": "sql", "engine": "postgresql", "url": token, "query": "SELECT 1"}
    diagnostic = failure(config, context, "pg")
    assert diagnostic.key == "data.pg.engine"
    assert "psycopg" in diagnostic.detail
    assert revealed == [token]
    assert "hunter2" not in str(diagnostic)


def test_spec_dump_by_field_name_and_default_freshness_column(context: ProviderContext) -> None:
    config = copy.deepcopy(PATIENTS)
    config["schema_"] = config.pop("schema")
    config["schema_"]["columns"]["age"] = {"type": "bool"}
    config["freshness"] = {"column": None, "max_age": "1000ms"}
    diagnostic = failure(config, context)
    assert diagnostic.key == "data.patients.schema.columns.age"
    del config["schema_"]
    result = apply(config, context)
    assert result.outputs["freshness"]["column"] == "registered_at"
    assert result.outputs["freshness"]["stale"] is True

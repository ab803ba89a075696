"""The features provider: the example's features.diagnosis built end to end, and failures."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from example_project import example_config

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    ProviderContext,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.data import DataProvider
from mlform.providers.features import FeaturesProvider
from mlform.providers.testing import ProviderConformance

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# The example's own configs: data.tumors, data.patients and features.diagnosis.
TUMORS: dict[str, Any] = example_config("data/tumors.yaml")
PATIENTS: dict[str, Any] = example_config("data/patients.yaml")
DIAGNOSIS: dict[str, Any] = example_config("features/diagnosis.yaml")
ADDRESS = Address.parse("features.diagnosis")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """data.tumors and data.patients applied once for the module."""
    project = tmp_path_factory.mktemp("project")
    (project / "data").mkdir()
    shutil.copy(REPO / "data" / "patients.csv", project / "data" / "patients.csv")
    context = ProviderContext(project, project / ".mlform", "dev")
    outputs: dict[str, dict[str, Any]] = {}
    for name, config in (("tumors", TUMORS), ("patients", PATIENTS)):
        address = Address.parse(f"data.{name}")
        result = DataProvider().create(
            ApplyRequest(address, "create", config, None, {}, {}, context)
        )
        outputs[str(address)] = dict(result.outputs)
    return outputs


@pytest.fixture
def context(tmp_path: Path) -> ProviderContext:
    return ProviderContext(tmp_path, tmp_path / ".mlform", "dev")


def build(
    config: dict[str, Any],
    upstream: dict[str, dict[str, Any]],
    context: ProviderContext,
    address: Address = ADDRESS,
) -> ApplyResult:
    request = ApplyRequest(address, "create", config, None, {}, upstream, context)
    return FeaturesProvider().create(request)


def failure(
    config: dict[str, Any], upstream: dict[str, dict[str, Any]], context: ProviderContext
) -> Diagnostic:
    with pytest.raises(StepFailed) as caught:
        build(config, upstream, context)
    return caught.value.diagnostic


class TestFeaturesProviderConformance(ProviderConformance):
    @pytest.fixture
    def provider(self) -> FeaturesProvider:
        return FeaturesProvider()

    @pytest.fixture
    def address(self) -> Address:
        return ADDRESS

    @pytest.fixture
    def valid_config(self) -> dict[str, Any]:
        return copy.deepcopy(DIAGNOSIS)

    @pytest.fixture
    def invalid_config(self) -> dict[str, Any]:
        config = copy.deepcopy(DIAGNOSIS)
        config["transforms"].append({"op": "pivot"})
        return config

    @pytest.fixture
    def upstream_outputs(self, upstream: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return upstream


def test_example_diagnosis_end_to_end(upstream: dict[str, Any], context: ProviderContext) -> None:
    out = build(copy.deepcopy(DIAGNOSIS), upstream, context).outputs
    assert out["rows"] == {"all": 569, "train": 455, "test": 114}
    regions = ["region_east", "region_north", "region_south", "region_west"]
    assert out["columns"][-5:] == ["radius_ratio", *regions]
    assert "region" not in out["columns"] and "email" not in out["columns"]
    assert (out["label"], out["entity"], out["sensitive"]) == ("target", ["sample_id"], ["sex"])
    store = context.artifact_dir / "features" / "diagnosis" / out["digest"][:12]
    assert Path(out["table"]) == store / "all.parquet"
    assert out["splits"] == {
        "train": str(store / "train.parquet"),
        "test": str(store / "test.parquet"),
    }

    table = pq.read_table(out["table"])
    assert table.column("sample_id").to_pylist() == list(range(569))
    ratio = table.column("radius_ratio").to_pylist()
    worst, mean = table.column("worst_radius").to_pylist(), table.column("mean_radius").to_pylist()
    assert ratio == pytest.approx([w / m for w, m in zip(worst, mean, strict=True)])
    assert all(
        sum(row) == 1 for row in zip(*(table.column(r).to_pylist() for r in regions), strict=True)
    )
    patients = pq.read_table(upstream["data.patients"]["snapshot"])
    first_region = patients.column("region").to_pylist()[0]
    assert table.column(f"region_{first_region}").to_pylist()[0] == 1


def test_split_is_disjoint_and_stratified(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    out = build(copy.deepcopy(DIAGNOSIS), upstream, context).outputs
    train = pq.read_table(out["splits"]["train"])
    test = pq.read_table(out["splits"]["test"])
    train_ids, test_ids = (
        set(train.column("sample_id").to_pylist()),
        set(test.column("sample_id").to_pylist()),
    )
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(569))
    overall = 357 / 569  # benign share of the Wisconsin dataset

    def share(t: pa.Table) -> float:
        labels = t.column("target").to_pylist()
        return float(sum(labels)) / len(labels)

    assert abs(share(train) - overall) < 0.005
    assert abs(share(test) - overall) < 0.01


def test_builds_are_byte_identical(upstream: dict[str, Any], tmp_path: Path) -> None:
    first = ProviderContext(tmp_path / "a", tmp_path / "a" / ".mlform", "dev")
    second = ProviderContext(tmp_path / "b", tmp_path / "b" / ".mlform", "dev")
    one = build(copy.deepcopy(DIAGNOSIS), upstream, first).outputs
    two = build(copy.deepcopy(DIAGNOSIS), upstream, second).outputs
    assert one["digest"] == two["digest"]
    for part in ("train", "test"):
        assert Path(one["splits"][part]).read_bytes() == Path(two["splits"][part]).read_bytes()
    assert Path(one["table"]).read_bytes() == Path(two["table"]).read_bytes()


def test_another_seed_changes_digest_and_split(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    base = build(copy.deepcopy(DIAGNOSIS), upstream, context).outputs
    config = copy.deepcopy(DIAGNOSIS)
    config["split"]["seed"] = 7
    other = build(config, upstream, context).outputs
    assert other["digest"] != base["digest"]
    ids = [
        set(pq.read_table(o["splits"]["test"]).column("sample_id").to_pylist())
        for o in (base, other)
    ]
    assert ids[0] != ids[1]


def test_validation_split_and_standardize_on_train_only(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    config = copy.deepcopy(DIAGNOSIS)
    config["split"]["validation_size"] = 0.1
    config["transforms"].append({"op": "standardize", "columns": ["age", "mean_area"]})
    out = build(config, upstream, context).outputs
    assert out["rows"] == {"all": 569, "train": 398, "test": 114, "validation": 57}
    assert set(out["splits"]) == {"train", "test", "validation"}
    train = pq.read_table(out["splits"]["train"]).column("mean_area").to_numpy()
    assert train.mean() == pytest.approx(0.0, abs=1e-9)
    assert train.std() == pytest.approx(1.0)
    test = pq.read_table(out["splits"]["test"]).column("mean_area").to_numpy()
    assert abs(test.mean()) > 1e-6  # statistics did not come from the test rows
    raw = pq.read_table(upstream["data.tumors"]["snapshot"]).column("mean_area").to_numpy()
    assert out["standardize"]["mean_area"]["mean"] != pytest.approx(raw.mean())


def test_feature_set_can_read_another_feature_set(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    base = build(copy.deepcopy(DIAGNOSIS), upstream, context).outputs
    config = {
        "sources": ["diagnosis"],
        "entity": ["sample_id"],
        "transforms": [{"op": "select", "columns": ["sample_id", "radius_ratio", "target"]}],
        "label": "target",
        "split": {"test_size": 0.25, "seed": 1},
    }
    slim = Address.parse("features.slim")
    out = build(config, {"features.diagnosis": base}, context, slim).outputs
    assert out["columns"] == ["sample_id", "radius_ratio", "target"]
    assert out["rows"]["test"] == 143


def test_unknown_column_in_query(upstream: dict[str, Any], context: ProviderContext) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), "query": "SELECT t.nope FROM tumors AS t"}
    diagnostic = failure(config, upstream, context)
    assert diagnostic.key == "features.diagnosis.query"
    assert "nope" in diagnostic.detail and "DuckDB" in diagnostic.detail


def test_syntax_error_in_query(upstream: dict[str, Any], context: ProviderContext) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), "query": "SELEC * FROM tumors"}
    assert failure(config, upstream, context).key == "features.diagnosis.query"


def test_bad_transform_expression_names_its_index(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    config = copy.deepcopy(DIAGNOSIS)
    config["transforms"][0]["expression"] = "worst_radius / mean_radiuss"
    diagnostic = failure(config, upstream, context)
    assert diagnostic.key == "features.diagnosis.transforms[0]"
    assert "mean_radiuss" in diagnostic.detail


def test_stratify_with_a_single_member_class(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    config = copy.deepcopy(DIAGNOSIS)
    config["transforms"].append(
        {
            "op": "derive",
            "column": "target",
            "expression": "CASE WHEN sample_id = 3 THEN 2 ELSE target END",
        }
    )
    config["split"]["stratify"] = "target"
    diagnostic = failure(config, upstream, context)
    assert diagnostic.key == "features.diagnosis.split.stratify"
    assert "'2'" in diagnostic.summary and "only 1 row" in diagnostic.summary
    # With several columns the rare combination is named, with the columns.
    config["split"]["stratify"] = ["target", "sex"]
    diagnostic = failure(config, upstream, context)
    assert "only 1 row" in diagnostic.summary
    assert "'2, " in diagnostic.summary and "'target x sex'" in diagnostic.summary


def test_duplicate_entity_keys(upstream: dict[str, Any], context: ProviderContext) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), "entity": ["sex"]}
    diagnostic = failure(config, upstream, context)
    assert diagnostic.key == "features.diagnosis.entity"
    assert "not unique" in diagnostic.summary


def test_missing_label(upstream: dict[str, Any], context: ProviderContext) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), "label": "outcome"}
    diagnostic = failure(config, upstream, context)
    assert diagnostic.key == "features.diagnosis.label"
    assert "radius_ratio" in diagnostic.detail


def test_missing_upstream_source(upstream: dict[str, Any], context: ProviderContext) -> None:
    only_tumors = {"data.tumors": upstream["data.tumors"]}
    diagnostic = failure(copy.deepcopy(DIAGNOSIS), only_tumors, context)
    assert diagnostic.key == "features.diagnosis.sources[1]"
    assert "data.patients" in diagnostic.detail


def test_delete_removes_the_offline_store(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    out = build(copy.deepcopy(DIAGNOSIS), upstream, context).outputs
    FeaturesProvider().delete(DeleteRequest(ADDRESS, DIAGNOSIS, out, context))
    assert not (context.artifact_dir / "features" / "diagnosis").exists()
    assert Path(upstream["data.patients"]["snapshot"]).is_file()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"sources": []}, "features.diagnosis.sources"),
        ({"query": None}, "features.diagnosis.query"),
        ({"split": {"test_size": 1.5}}, "features.diagnosis.split"),
        ({"split": {"test_size": "a fifth"}}, "features.diagnosis.split"),
        ({"transforms": [{"op": "derive", "column": "x"}]}, "features.diagnosis.transforms[0]"),
    ],
)
def test_validate_flags_static_problems(
    change: dict[str, Any], key: str, context: ProviderContext
) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), **change}
    diagnostics = FeaturesProvider().validate(ValidateRequest(ADDRESS, config, context))
    assert [d.key for d in diagnostics] == [key]


def test_offline_store_path_is_relative_to_the_project(
    upstream: dict[str, Any], context: ProviderContext
) -> None:
    config = {**copy.deepcopy(DIAGNOSIS), "offline_store": {"format": "parquet", "path": "store"}}
    out = build(config, upstream, context).outputs
    assert Path(out["table"]).parent.parent == context.project_dir / "store" / "diagnosis"
    FeaturesProvider().delete(DeleteRequest(ADDRESS, config, out, context))
    assert not (context.project_dir / "store" / "diagnosis").exists()

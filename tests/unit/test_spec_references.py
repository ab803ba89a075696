"""Cross-reference checks: broken names, cycles, undeclared columns, exemptions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlform.diagnostics import Diagnostic, Severity
from mlform.spec import validate_spec


def system() -> dict[str, Any]:
    """A small valid system as plain data."""
    return {
        "project": {"name": "p"},
        "data": {
            "raw": {
                "kind": "sklearn",
                "dataset": "iris",
                "schema": {
                    "strict": True,
                    "columns": {"sample_id": {"type": "int64"}, "target": {"type": "int64"}},
                },
            }
        },
        "features": {
            "base": {"entity": ["sample_id"], "sources": ["raw"], "label": "target"},
        },
        "models": {
            "clf": {
                "framework": "sklearn",
                "task": "classification",
                "features": "base",
                "estimator": {"_target_": "sklearn.linear_model.LogisticRegression", "C": 1.0},
                "resources": "small",
            }
        },
        "resources": {"profiles": {"small": {"cpu": "500m", "memory": "1Gi"}}},
        "deployments": {"api": {"model": "clf", "resources": "small"}},
        "monitors": {"drift": {"deployment": "api", "type": "data_drift"}},
    }


def check(data: dict[str, Any]) -> list[Diagnostic]:
    _spec, found = validate_spec(data, {"features.base": ("configs/system.yaml", 12)})
    return found


def errors(data: dict[str, Any]) -> list[Diagnostic]:
    return [d for d in check(data) if d.severity is Severity.ERROR]


def test_small_system_is_clean() -> None:
    spec, found = validate_spec(system())
    assert spec is not None
    assert found == []


@pytest.mark.parametrize(
    ("edit", "key", "target"),
    [
        (
            lambda d: d["features"]["base"].update(sources=["rawx"]),
            "features.base.sources.0",
            "data.rawx",
        ),
        (
            lambda d: d["models"]["clf"].update(features="bse"),
            "models.clf.features",
            "features.bse",
        ),
        (
            lambda d: d["models"]["clf"].update(resources="big"),
            "models.clf.resources",
            "resources.profiles.big",
        ),
        (
            lambda d: d["deployments"]["api"].update(model="clx"),
            "deployments.api.model",
            "models.clx",
        ),
        (
            lambda d: d["deployments"]["api"].update(resources="big"),
            "deployments.api.resources",
            "resources.profiles.big",
        ),
        (
            lambda d: d["monitors"]["drift"].update(deployment="ap"),
            "monitors.drift.deployment",
            "deployments.ap",
        ),
    ],
)
def test_missing_reference_names_both_keys(edit: Any, key: str, target: str) -> None:
    data = system()
    edit(data)
    found = errors(data)
    assert len(found) == 1, [str(d) for d in found]
    diag = found[0]
    assert diag.key == key
    assert key in diag.summary and target in diag.summary
    assert "Declare" in diag.detail


def test_missing_reference_suggests_closest() -> None:
    data = system()
    data["deployments"]["api"]["model"] = "clff"
    assert "Did you mean 'clf'?" in errors(data)[0].detail


def test_ab_test_and_shadow_models_are_checked_and_become_dependencies() -> None:
    data = system()
    data["models"]["clf2"] = copy.deepcopy(data["models"]["clf"])
    data["deployments"]["api"]["strategy"] = {
        "type": "ab_test",
        "variants": [{"model": "clf", "weight": 50}, {"model": "nope", "weight": 50}],
    }
    diag = errors(data)[0]
    assert diag.key == "deployments.api.strategy.variants.1.model"
    data["deployments"]["api"]["strategy"] = {"type": "shadow", "model": "clf2"}
    from mlform.spec.load import declared_objects

    spec, _ = validate_spec(data)
    assert spec is not None
    deployment = next(o for o in declared_objects(spec, {}) if o.key == "deployments.api")
    assert [str(a) for a in deployment.depends_on] == ["model.clf", "model.clf2"]


def test_feature_cycle_is_one_diagnostic_showing_the_cycle() -> None:
    data = system()
    features = data["features"]
    features["a"] = {"entity": ["sample_id"], "sources": ["b"]}
    features["b"] = {"entity": ["sample_id"], "sources": ["c"]}
    features["c"] = {"entity": ["sample_id"], "sources": ["a"]}
    cycles = [d for d in errors(data) if "cycle" in d.summary]
    assert len(cycles) == 1
    assert (
        cycles[0].summary
        == "dependency cycle: features.a -> features.b -> features.c -> features.a"
    )


def test_feature_on_feature_dependency() -> None:
    data = system()
    data["features"]["derived"] = {"entity": ["sample_id"], "sources": ["base"]}
    spec, found = validate_spec(data)
    assert spec is not None and found == []
    from mlform.spec.load import declared_objects

    derived = next(o for o in declared_objects(spec, {}) if o.key == "features.derived")
    assert [str(a) for a in derived.depends_on] == ["features.base"]


def test_undeclared_column_is_an_error_when_the_schema_is_exact() -> None:
    data = system()
    data["features"]["base"]["label"] = "targte"
    diag = errors(data)[0]
    assert diag.key == "features.base.label"
    assert "Did you mean 'target'?" in diag.detail


def test_unconfirmable_column_is_a_warning() -> None:
    data = system()
    data["data"]["raw"]["schema"]["strict"] = False
    data["features"]["base"]["sensitive"] = ["sex"]
    spec, found = validate_spec(data)
    assert spec is not None
    assert [(d.severity, d.key) for d in found] == [(Severity.WARNING, "features.base.sensitive.0")]


def test_derived_columns_count_as_declared() -> None:
    data = system()
    data["features"]["base"]["transforms"] = [
        {"op": "derive", "column": "ratio", "expression": "target / 2"}
    ]
    data["features"]["base"]["sensitive"] = ["ratio"]
    assert check(data) == []


def test_exemption_for_an_undeclared_object_warns() -> None:
    data = system()
    data["policies"] = {
        "exemptions": [
            {
                "rule": "fairness.ratio",
                "address": "model.ghost",
                "reason": "r",
                "expires": "2030-01-01",
            }
        ]
    }
    found = check(data)
    assert [(d.severity, d.key) for d in found] == [
        (Severity.WARNING, "policies.exemptions.0.address")
    ]


def test_references_are_reported_together_with_type_errors() -> None:
    data = system()
    data["models"]["clf"]["features"] = "nope"
    data["models"]["clf"]["task"] = "ranking"
    data["deployments"]["api"]["replicas"] = "many"
    data["monitors"]["drift"]["deployment"] = "apii"
    found = errors(data)
    assert sorted(d.key or "" for d in found) == [
        "deployments.api.replicas",
        "models.clf.features",
        "models.clf.task",
        "monitors.drift.deployment",
    ]
    monitor = next(d for d in found if d.key == "monitors.drift.deployment")
    assert "deployments.apii" in monitor.summary and "api" in monitor.detail


def test_a_reference_with_a_type_error_is_reported_once() -> None:
    data = system()
    data["models"]["clf"]["features"] = 42
    data["deployments"]["api"]["model"] = "missing"
    data["deployments"]["api"]["replicas"] = "many"
    keys = [d.key for d in errors(data)]
    assert keys.count("models.clf.features") == 1
    assert "deployments.api.model" in keys


def test_a_name_in_both_data_and_features_means_the_data_source() -> None:
    data = system()
    data["features"]["raw"] = {"entity": ["sample_id"], "sources": ["raw"], "label": "target"}
    spec, found = validate_spec(data)
    assert spec is not None, [str(d) for d in found]
    assert found == []
    from mlform.spec.load import declared_objects

    raw = next(o for o in declared_objects(spec, {}) if o.key == "features.raw")
    assert [str(a) for a in raw.depends_on] == ["data.raw"]

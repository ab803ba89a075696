"""Lineage records: shaped like OpenLineage 2-0-2 RunEvents, stored per version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlform.evaluation import check_gates
from mlform.registry.lineage import RUN_EVENT_SCHEMA_URL, DatasetInput, lineage_event
from mlform.registry.versions import ModelRegistry

_FACET = {
    "type": "object",
    "required": ["_producer", "_schemaURL"],
    "properties": {
        "_producer": {"type": "string", "format": "uri"},
        "_schemaURL": {"type": "string", "format": "uri"},
    },
}
_DATASET = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": {"type": "object", "additionalProperties": _FACET},
    },
}
# The required fields of the RunEvent in https://openlineage.io/spec/2-0-2/OpenLineage.json
RUN_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {
            "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"],
        },
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {"type": "object", "additionalProperties": _FACET},
            },
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {
                "namespace": {"type": "string", "minLength": 1},
                "name": {"type": "string", "minLength": 1},
                "facets": {"type": "object", "additionalProperties": _FACET},
            },
        },
        "inputs": {"type": "array", "items": _DATASET},
        "outputs": {"type": "array", "items": _DATASET},
    },
}


def _validate(event: dict[str, Any]) -> None:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(RUN_EVENT_SCHEMA, format_checker=checker).validate(event)


def _event(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "project": "diagnosis",
        "stack": "dev",
        "address": "model.diagnosis",
        "run_id": str(uuid.uuid4()),
        "event_time": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "inputs": [
            DatasetInput("features.diagnosis", "sha256:" + "f" * 64, [("mean_radius", "float")]),
            DatasetInput("data.tumors", "sha256:" + "d" * 64),
            DatasetInput("data.patients", "sha256:" + "e" * 64, namespace="file"),
        ],
        "output_digest": "sha256:" + "a" * 64,
        "model_version": "model.diagnosis@v2",
        "status": "accepted",
        "metrics": {"roc_auc": 0.97},
        "gate_results": check_gates({"roc_auc": ">= 0.95"}, {"roc_auc": 0.97}),
        "policy_results": [{"rule": "model-card", "passed": True}],
    }
    args.update(overrides)
    return lineage_event(**args)


def test_event_validates_and_carries_versions() -> None:
    event = _event()
    _validate(event)
    assert event["eventType"] == "COMPLETE"
    assert event["eventTime"] == "2024-05-01T12:00:00.000Z"
    assert event["schemaURL"] == RUN_EVENT_SCHEMA_URL
    assert event["job"] == {"namespace": "diagnosis/dev", "name": "model.diagnosis", "facets": {}}
    features, tumors, patients = event["inputs"]
    assert features["facets"]["version"]["datasetVersion"] == "sha256:" + "f" * 64
    assert features["facets"]["schema"]["fields"] == [{"name": "mean_radius", "type": "float"}]
    assert tumors["namespace"] == "diagnosis/dev" and patients["namespace"] == "file"
    assert tumors["facets"]["version"]["datasetVersion"] == "sha256:" + "d" * 64
    [output] = event["outputs"]
    assert output["facets"]["version"]["datasetVersion"] == "sha256:" + "a" * 64
    assert output["facets"]["mlform_modelVersion"]["version"] == "model.diagnosis@v2"
    facets = event["run"]["facets"]
    assert facets["mlform_metrics"]["metrics"] == {"roc_auc": 0.97}
    assert facets["mlform_evaluation"]["gates"][0]["passed"] is True
    assert facets["mlform_evaluation"]["policies"] == [{"rule": "model-card", "passed": True}]
    for facet in [*facets.values(), *features["facets"].values()]:
        assert facet["_schemaURL"].startswith("https://openlineage.io/spec/")


def test_failed_run_has_an_error_facet() -> None:
    event = _event(
        event_type="FAIL", error="CUDA out of memory", output_digest=None, model_version=None
    )
    _validate(event)
    assert event["outputs"] == []
    assert event["run"]["facets"]["errorMessage"]["message"] == "CUDA out of memory"


def test_run_id_must_be_a_uuid() -> None:
    with pytest.raises(ValueError):
        _event(run_id="run-1")


def test_schema_rejects_a_broken_event() -> None:
    event = _event()
    del event["job"]["namespace"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(event)


def test_lineage_is_stored_per_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_bytes(b"w")
    digest = registry.artifacts.put_dir(tmp_path / "m")
    run_id = str(uuid.uuid4())
    mv = registry.register(
        "model.diagnosis",
        digest,
        status="accepted",
        metrics={},
        run_id=run_id,
        lineage=lambda v: _event(run_id=run_id, output_digest=v.digest, model_version=v.ref),
    )
    stored = registry.lineage(mv.ref)
    _validate(stored)
    assert stored["run"]["runId"] == run_id
    assert stored["outputs"][0]["facets"]["mlform_modelVersion"]["version"] == mv.ref
    replaced = registry.save_lineage(mv.ref, _event(run_id=run_id))
    assert replaced.name == "lineage.json"

"""Lineage records shaped like OpenLineage RunEvents (spec 2-0-2).

One record per registered version: the training run (``run.runId``, a UUID), the job
(namespace ``<project>/<stack>``, name the model address), the inputs (the feature set
and its data sources, each with its content digest in the standard ``version`` facet
and its columns in the ``schema`` facet) and the output (the model artifact, its digest
in the ``version`` facet). Metrics and gate, fairness and policy results travel in
custom facets prefixed ``mlform_``, declared against the spec's generic ``RunFacet`` and
``DatasetFacet`` definitions (custom facets must not reuse standard names).

Pure: the caller passes the time (or gets the current UTC time) and stores the dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from mlform import __version__
from mlform.registry.jsonio import jsonable

__all__ = [
    "PRODUCER",
    "RUN_EVENT_SCHEMA_URL",
    "DatasetInput",
    "lineage_event",
]

SPEC = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA_URL = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
_RUN_FACET_URL = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunFacet"
_DATASET_FACET_URL = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/DatasetFacet"
_VERSION_FACET_URL = (
    f"{SPEC}/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
)
_SCHEMA_FACET_URL = f"{SPEC}/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
_ERROR_FACET_URL = f"{SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
# A URN names the producer without pointing at a web page that may not exist.
PRODUCER = f"urn:mlform:{__version__}"

EventType = Literal["COMPLETE", "FAIL"]


@dataclass(frozen=True, slots=True)
class DatasetInput:
    """A dataset the training read: a feature set or one of its data sources."""

    name: str  # e.g. "features.diagnosis", "data.tumors"
    version: str | None = None  # its content digest
    fields: Sequence[tuple[str, str]] = ()  # (column, type)
    namespace: str | None = None  # default: the job's namespace


def _facet(url: str, producer: str, **body: Any) -> dict[str, Any]:
    return {"_producer": producer, "_schemaURL": url, **jsonable(body)}


def _as_dicts(items: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(dict(jsonable(item)))
        else:
            to_dict = getattr(item, "to_dict", None)
            out.append(dict(jsonable(to_dict())) if callable(to_dict) else {"value": str(item)})
    return out


def _event_time(when: datetime | str | None) -> str:
    if isinstance(when, str):
        return when
    moment = when or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lineage_event(
    *,
    project: str,
    stack: str,
    address: str,
    run_id: str,
    event_type: EventType = "COMPLETE",
    event_time: datetime | str | None = None,
    inputs: Sequence[DatasetInput] = (),
    output_digest: str | None = None,
    model_version: str | None = None,
    status: str | None = None,
    metrics: Mapping[str, float | None] | None = None,
    gate_results: Sequence[Any] = (),
    fairness: Sequence[Any] = (),
    policy_results: Sequence[Any] = (),
    reasons: Sequence[str] = (),
    error: str | None = None,
    producer: str = PRODUCER,
) -> dict[str, Any]:
    """A JSON-able OpenLineage RunEvent for the training of ``address``.

    ``run_id`` must be a UUID (the spec requires one; :func:`mlform.registry.runs.new_run_id`
    makes them). ``event_type`` is COMPLETE for a finished training (even one whose gates
    failed: ``status`` says rejected) and FAIL when training itself failed (``error``).
    """
    run_uuid = str(uuid.UUID(run_id))
    namespace = f"{project}/{stack}"
    run_facets: dict[str, Any] = {}
    if metrics:
        run_facets["mlform_metrics"] = _facet(_RUN_FACET_URL, producer, metrics=dict(metrics))
    if gate_results or fairness or policy_results or status or reasons:
        run_facets["mlform_evaluation"] = _facet(
            _RUN_FACET_URL,
            producer,
            status=status,
            reasons=list(reasons),
            gates=_as_dicts(gate_results),
            fairness=_as_dicts(fairness),
            policies=_as_dicts(policy_results),
        )
    if event_type == "FAIL" or error:
        run_facets["errorMessage"] = _facet(
            _ERROR_FACET_URL,
            producer,
            message=error or "training failed",
            programmingLanguage="python",
        )
    event: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": _event_time(event_time),
        "producer": producer,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": run_uuid, "facets": run_facets},
        "job": {"namespace": namespace, "name": address, "facets": {}},
        "inputs": [_input(d, namespace, producer) for d in inputs],
        "outputs": [],
    }
    if output_digest is not None or model_version is not None:
        facets: dict[str, Any] = {}
        if output_digest is not None:
            facets["version"] = _facet(_VERSION_FACET_URL, producer, datasetVersion=output_digest)
        if model_version is not None:
            facets["mlform_modelVersion"] = _facet(
                _DATASET_FACET_URL, producer, version=model_version, status=status
            )
        event["outputs"].append({"namespace": namespace, "name": address, "facets": facets})
    return event


def _input(dataset: DatasetInput, namespace: str, producer: str) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if dataset.version is not None:
        facets["version"] = _facet(_VERSION_FACET_URL, producer, datasetVersion=dataset.version)
    if dataset.fields:
        facets["schema"] = _facet(
            _SCHEMA_FACET_URL,
            producer,
            fields=[{"name": n, "type": t} for n, t in dataset.fields],
        )
    return {
        "namespace": dataset.namespace or namespace,
        "name": dataset.name,
        "facets": facets,
    }

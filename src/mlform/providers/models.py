"""The ``model`` provider: train, evaluate, gate, register.

A create or retrain step loads the feature set the model names (from its upstream
outputs), trains with the framework's trainer behind the user-code boundary, evaluates
on the held-out test split, checks the gates (thresholds, ``must_beat_champion``) and the
fairness rule, stores the artifact content-addressed and registers a version
(``model.churn@v3``) with its card, reference statistics, run record and lineage record.
On the kubernetes target the training itself runs as a Job
(:mod:`mlform.providers.models_cluster`, ``models.NAME.training``); evaluation, gates and
registration are the same wherever the model trained.
An accepted candidate becomes the ``champion``; a rejected one is recorded with its
reasons and the step reports ``rejected``, so nothing downstream changes. An ``update``
(only local fields such as the card changed) re-renders the current version's card
without training.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic

if TYPE_CHECKING:
    from mlform.evaluation.fairness import FairnessResult
    from mlform.evaluation.gates import GateResult
    from mlform.registry.runs import RunStore
    from mlform.registry.versions import ModelRegistry

from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    DiffRequest,
    DiffResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.models_cluster import (
    ClusterRun,
    remove_training_job,
    train_in_cluster,
    training_problems,
    trains_in_cluster,
)


class ModelProvider:
    kind = Kind.MODEL

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        return tuple(training_problems(request.address, request.config, request.context))

    def read(self, request: ReadRequest) -> ReadResult:
        digest = request.outputs.get("digest")
        if not digest:
            return ReadResult(dict(request.outputs))
        from mlform.registry.queries import registry_for

        registry = registry_for(request.context.state_dir)
        if not registry.artifacts.exists(digest):
            return ReadResult(None)
        return ReadResult(dict(request.outputs))

    def diff(self, request: DiffRequest) -> DiffResult:
        return DiffResult(changed=dict(request.prior_config) != dict(request.config))

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._train(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        digest = request.prior_outputs.get("digest")
        if request.action == "update" and digest:
            # Only gates, metrics, fairness, the card or resources changed: judge the
            # trained artifact again under the new config, without training.
            return self._train(request, reuse=str(digest))
        return self._train(request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        """Versions stay in the registry for audit; the object's aliases are removed."""
        from mlform.registry.queries import registry_for

        registry = registry_for(request.context.state_dir)
        address = str(request.address)
        for alias in list(registry.aliases(address)):
            registry.remove_alias(address, alias)
        remove_training_job(request)
        return DeleteResult()

    # -- steps ---------------------------------------------------------------------

    def _train(self, request: ApplyRequest, reuse: str | None = None) -> ApplyResult:
        from mlform.registry.runs import RunRecord, git_commit, new_run_id
        from mlform.state.timestamps import utc_now as now_rfc3339

        address, config, context = request.address, request.config, request.context
        features_key = f"features.{config['features']}"
        features = request.upstream_outputs.get(features_key)
        if not features:
            raise StepFailed(
                Diagnostic.error(
                    f"{address}: feature set {features_key} has no outputs to train on",
                    f"Apply {features_key} first (it is upstream of {address}).",
                    address=str(address),
                    key=f"models.{address.name}.features",
                )
            )
        run_id, started, clock = new_run_id(), now_rfc3339(), time.monotonic()
        context.progress("loading the feature set", 0.0)
        data = _load(features, config, address)
        cluster: ClusterRun | None = None
        with _importable(context.project_dir):
            if reuse is not None:
                trained = _reload(config, reuse, request.prior_outputs, context)
            elif trains_in_cluster(config, context.target):
                cluster = train_in_cluster(request, run_id)  # a Job (models_cluster)
                trained = cluster.trained
            else:
                trained = _fit(config, data, address, context, request.fingerprints)
        context.progress("evaluating", 0.9)
        outcome = _evaluate(config, data, trained, address, context)
        if reuse is None:
            with tempfile.TemporaryDirectory(prefix="mlform-model-") as tmp:
                trained.save(Path(tmp))
                digest = outcome.registry.artifacts.put_dir(Path(tmp))
        else:
            digest = reuse
        if cluster is not None:
            cluster.discard()
        # The training Job is the model's infrastructure: recorded with every outcome.
        infrastructure = cluster.outputs() if cluster is not None else _carried(request)
        version = _register(request, data, trained, outcome, digest, run_id)
        outcome.runs.save(
            RunRecord(
                run_id,
                str(address),
                started,
                finished_at=now_rfc3339(),
                duration_s=round(time.monotonic() - clock, 3),
                status="succeeded",  # training ran; the gates' verdict is on the version
                params=dict(trained.params),
                epochs=_epochs(trained),
                metrics=outcome.metrics,
                hardware=dict(trained.hardware),
                fingerprints=dict(request.fingerprints),
                git_commit=git_commit(context.project_dir),
                version=version.ref,
            )
        )
        outputs = _outputs(version, outcome, trained, run_id, digest)
        if outcome.accepted:
            outcome.registry.set_alias(str(address), "champion", version.version)
            context.progress(f"registered {version.ref} (champion)", 1.0)
            return ApplyResult(outputs={**outputs, **infrastructure})
        reasons = "; ".join(version.reasons) or "it failed its gates"
        return ApplyResult(
            outputs={**request.prior_outputs, "last_rejected": outputs, **infrastructure},
            status="rejected",
            diagnostics=(
                Diagnostic.error(
                    f"{version.ref} rejected: {reasons}",
                    "The candidate is recorded in the registry as rejected (mlform models show "
                    f"{version.ref}); the champion and the deployments that serve it were left "
                    "alone. Improve the model or its data, or relax the gate, and apply again.",
                    address=str(address),
                ),
            ),
        )


def _carried(request: ApplyRequest) -> dict[str, Any]:
    """A model trained here keeps the record of its last training Job, if it had one."""
    return {
        key: request.prior_outputs[key]
        for key in ("training", "infrastructure", "live")
        if key in request.prior_outputs
    }


_PATH_LOCK = threading.Lock()


@contextmanager
def _importable(project_dir: Path) -> Iterator[None]:
    """User modules named by ``_target_`` import from the project root (``ml.pipelines``)."""
    entry = str(project_dir)
    with _PATH_LOCK:
        added = entry not in sys.path
        if added:
            sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with _PATH_LOCK, suppress(ValueError):
                sys.path.remove(entry)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A candidate's evaluation, and where it is recorded."""

    registry: ModelRegistry
    runs: RunStore
    metrics: dict[str, float]
    gates: list[GateResult]
    fairness: list[FairnessResult]
    accepted: bool


def _load(features: Mapping[str, Any], config: Mapping[str, Any], address: Address) -> Any:
    from mlform.training.data import load_training_data

    return load_training_data(
        features,
        task=config["task"],
        exclude_columns=list(config.get("exclude_columns", [])),
        source=f"features.{config['features']}",
        address=str(address),
    )


def _fit(
    config: Mapping[str, Any],
    data: Any,
    address: Address,
    context: ProviderContext,
    fingerprints: Mapping[str, str],
) -> Any:
    if config["framework"] == "sklearn":
        from mlform.training.sklearn_trainer import train_sklearn

        return train_sklearn(dict(config), data, progress=context.progress, address=str(address))
    from mlform.training.torch_trainer import train_torch

    # Checkpoints are kept per code+config fingerprint: a fixed user module must not
    # resume from a checkpoint its broken predecessor wrote.
    key = hashlib.sha256(json.dumps(dict(fingerprints), sort_keys=True).encode()).hexdigest()
    return train_torch(
        dict(config),
        data,
        progress=context.progress,
        checkpoint_dir=context.state_dir / "checkpoints" / str(address) / key[:16],
        gpu_requested=_gpu_requested(config),
        address=str(address),
    )


def _reload(
    config: Mapping[str, Any],
    digest: str,
    prior: Mapping[str, Any],
    context: ProviderContext,
) -> Any:
    """The recorded artifact as a trained model (no training), for re-evaluation."""
    from mlform.registry.queries import registry_for
    from mlform.training.types import Predictor, TrainedModel

    path = registry_for(context.state_dir).artifacts.path_of(digest)
    predictor: Predictor
    if config["framework"] == "sklearn":
        from mlform.training.sklearn_trainer import load_sklearn

        predictor = load_sklearn(path)
    else:
        from mlform.training.torch_trainer import load_torch

        predictor = load_torch(path)
    return TrainedModel(
        framework=config["framework"],
        predictor=predictor,
        params={"reevaluated": prior.get("version"), "digest": digest},
        epochs=(),
        duration_s=0.0,
        hardware={"device": "cpu", "note": f"re-evaluated {prior.get('version')}, not trained"},
        save=lambda _dir: [],
    )


def _gpu_requested(config: Mapping[str, Any]) -> bool:
    """The model's resource profile (expanded into its config by the spec) asks for a GPU."""
    gpu = (config.get("resources") or {}).get("gpu") or {}
    return int(gpu.get("count", 0) or 0) > 0


def _evaluate(
    config: Mapping[str, Any], data: Any, trained: Any, address: Address, context: ProviderContext
) -> _Outcome:
    from mlform.evaluation import check_fairness, check_gates, compute_metrics
    from mlform.evaluation.gates import gate_metrics
    from mlform.evaluation.metrics import metrics_to_compute
    from mlform.registry.queries import registry_for, run_store_for

    gates = config.get("gates") or {}
    names = metrics_to_compute(data.task, config.get("metrics") or [], gate_metrics(gates))
    y_pred = trained.predictor.predict(data.test.x)
    y_score = trained.predictor.predict_proba(data.test.x)
    metrics = compute_metrics(data.task, names, data.test.y, y_pred, y_score)
    registry = registry_for(context.state_dir)
    results = check_gates(gates, metrics, registry.champion_metrics(str(address)))
    fairness_config = config.get("fairness")
    fairness = []
    if fairness_config and data.task == "classification":
        fairness = check_fairness(
            y_pred,
            data.test.sensitive,
            list(fairness_config["sensitive"]),
            min_ratio=float(fairness_config.get("min_ratio", 0.8)),
        )
    accepted = all(r.passed for r in results) and all(f.passed for f in fairness)
    return _Outcome(
        registry=registry,
        runs=run_store_for(context.state_dir),
        metrics=metrics,
        gates=results,
        fairness=fairness,
        accepted=accepted,
    )


def _register(
    request: ApplyRequest,
    data: Any,
    trained: Any,
    outcome: _Outcome,
    digest: str,
    run_id: str,
) -> Any:
    from mlform.registry.card import CardInputs, render_card
    from mlform.registry.lineage import DatasetInput, lineage_event
    from mlform.registry.reference import reference_stats

    address, config, context = request.address, request.config, request.context
    features_key = f"features.{config['features']}"
    names = list(data.feature_names)
    rows = {"train": len(data.train.y), "test": len(data.test.y)}
    if data.validation is not None:
        rows["validation"] = len(data.validation.y)
    train_predictions = trained.predictor.predict(data.train.x)
    reference = reference_stats(
        data.train.x,
        names,
        task=data.task,
        y=data.train.y,
        predictions=train_predictions,
        classes=data.classes,
    )
    project = str((context.settings.get("project") or {}).get("name", "mlform"))

    def card(version: Any) -> str:
        return render_card(
            CardInputs(
                ref=version.ref,
                status=version.status,
                task=data.task,
                framework=config["framework"],
                feature_set=str(config["features"]),
                label=data.label,
                feature_names=names,
                rows=rows,
                digest=version.digest,
                created_at=version.created_at,
                run_id=run_id,
                card=config.get("card"),
                description=config.get("description"),
                owner=config.get("owner"),
                metrics=outcome.metrics,
                gate_results=outcome.gates,
                fairness=outcome.fairness,
                hardware=dict(trained.hardware),
                duration_s=trained.duration_s,
                reasons=version.reasons,
            ),
            project_dir=context.project_dir,
        )

    def lineage(version: Any) -> dict[str, Any]:
        inputs = [
            DatasetInput(
                features_key,
                request.upstream_outputs.get(features_key, {}).get("digest"),
                [(n, "float32") for n in names],
            ),
            *(
                DatasetInput(dep, outputs.get("digest") or outputs.get("content_digest"))
                for dep, outputs in sorted(request.upstream_outputs.items())
                if dep != features_key
            ),
        ]
        return lineage_event(
            project=project,
            stack=context.stack,
            address=str(address),
            run_id=run_id,
            inputs=inputs,
            output_digest=version.digest,
            model_version=version.ref,
            status=version.status,
            metrics=outcome.metrics,
            gate_results=outcome.gates,
            fairness=outcome.fairness,
            reasons=version.reasons,
        )

    return outcome.registry.register(
        str(address),
        digest,
        status="accepted" if outcome.accepted else "rejected",
        metrics=outcome.metrics,
        gate_results=outcome.gates,
        fairness=outcome.fairness,
        run_id=run_id,
        card_markdown=card,
        reference_stats=reference,
        fingerprints=dict(request.fingerprints),
        lineage=lineage,
    )


def _epochs(trained: Any) -> list[dict[str, Any]]:
    from mlform.registry.runs import epoch_dicts

    return epoch_dicts(trained.epochs)


def _outputs(
    version: Any, outcome: _Outcome, trained: Any, run_id: str, digest: str
) -> dict[str, Any]:
    return {
        "version": version.ref,
        "digest": digest,
        "status": version.status,
        "metrics": {k: round(v, 6) for k, v in outcome.metrics.items()},
        "gates": [g.to_dict() for g in outcome.gates],
        "fairness": [f.to_dict() for f in outcome.fairness],
        "run_id": run_id,
        "framework": trained.framework,
        "device": trained.hardware.get("device"),
        "epochs": len(trained.epochs),
    }

"""``mlform models fit``: train one model where it is run, as a training Job's pod does.

A model that trains on the cluster (:mod:`mlform.providers.models_cluster`) runs
``mlform models fit NAME -s STACK --run-id RUN --to file://<state dir>/registry/runs/RUN
[-- OVERRIDES]`` in the project's image. :func:`fit_to` composes the stack's config the way
``apply`` did (with apply's command-line overrides, which the Job passes on), checks that the
model it finds is the one ``apply`` planned (the fingerprints the Job carries in
``$MLFORM_EXPECTED_FINGERPRINTS``: a config or code difference means the image's project
differs from the one apply saw, and training anyway would register a version under the wrong
fingerprints), loads the feature set exactly as apply recorded it
(the features object's outputs in the stack's state; the state directory is mounted into
the pod at the same path), trains with the provider's own ``_fit`` and writes a
:class:`FitResult` directory::

    <to>/model/        the trained model's files (the trainer's ``save``)
    <to>/result.json   params, epochs, hardware, fingerprints (written last: its commit)

Under ``torchrun`` every process trains and only rank 0 (``$RANK``) writes.
:func:`read_result` is the apply side's way back to a ``TrainedModel``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError, DiagnosticsError

__all__ = [
    "EXPECTED_FINGERPRINTS_ENV",
    "FitResult",
    "fit_to",
    "local_path",
    "read_result",
    "trained_model",
]

EXPECTED_FINGERPRINTS_ENV = "MLFORM_EXPECTED_FINGERPRINTS"
RESULT_FORMAT = 1
RESULT_FILE = "result.json"
MODEL_DIR = "model"
# Fingerprints that must match: a difference trains something other than what was planned.
# ``toolchain`` (library and Python versions) may differ between the image and the machine
# that planned; the result records it.
_STRICT_PREFIXES = ("config", "code:")


@dataclass(frozen=True, slots=True)
class FitResult:
    """What a training run left at its ``--to`` location."""

    directory: Path
    address: str
    run_id: str
    framework: str
    params: Mapping[str, Any]
    epochs: list[dict[str, Any]]
    duration_s: float
    hardware: Mapping[str, Any]
    fingerprints: Mapping[str, str]

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR


def local_path(uri: str, what: str = "--to") -> Path:
    """The directory a ``file://`` URI names (the only store this release reads and writes)."""
    if not uri.startswith("file://") or not uri[len("file://") :].startswith("/"):
        raise ConfigError(
            [
                Diagnostic.error(
                    f"{what} {uri!r} is not a file:// URI with an absolute path",
                    "Training results go to the stack's artifact store, which is a "
                    "file:///absolute/path directory in this release.",
                    key=what,
                )
            ]
        )
    return Path(uri[len("file://") :])


def fit_to(
    name: str,
    *,
    project_dir: Path,
    stack: str | None,
    run_id: str,
    to: str,
    state_dir: Path | None = None,
    expected: Mapping[str, str] | None = None,
    overrides: tuple[str, ...] = (),
    progress: Callable[[str, float | None], None] = lambda _m, _f: None,
) -> FitResult | None:
    """Train model ``name`` of the stack and write it to ``to`` (module docstring).

    Returns the result written, or None on a rank other than 0 (which writes nothing).
    Raises :class:`~mlform.errors.DiagnosticsError` for every expected failure.
    """
    from mlform import workspace
    from mlform.desired.fingerprint import digest
    from mlform.desired.resolve import external_fingerprints
    from mlform.providers.base import ProviderContext, StepFailed
    from mlform.providers.models import _fit, _importable, _load
    from mlform.state.store import LocalStateStore

    target_dir = local_path(to)
    loaded = workspace.load_system(project_dir, stack, overrides)
    address = Address(Kind.MODEL, name.removeprefix("model."))
    declared = {o.address: o for o in loaded.objects}
    obj = declared.get(address)
    if obj is None:
        from mlform.spec.problems import hint

        names = sorted(a.name for a in declared if a.kind is Kind.MODEL)
        raise ConfigError(
            [
                Diagnostic.error(
                    f"no model named {address.name!r} is declared in stack {loaded.stack!r}",
                    f"Declared models: {', '.join(names) or 'none'}.{hint(address.name, names)}",
                    key="NAME",
                )
            ]
        )
    fingerprints = {
        "config": digest(obj.config),
        **external_fingerprints(obj, loaded),
    }
    _check_expected(address, fingerprints, expected or {})
    state_dir = (state_dir or workspace.state_dir(loaded)).resolve()
    config = obj.config
    features_key = f"features.{config['features']}"
    state = LocalStateStore(state_dir).read()
    recorded = None if state is None else state.get(features_key)
    if recorded is None or not recorded.outputs:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"{address}: {features_key} is not applied in the state at {state_dir}",
                    f"Apply {features_key} first; a pod needs the stack's state directory "
                    "mounted at the same path (the training Job mounts it).",
                    address=str(address),
                    key=f"models.{address.name}.features",
                )
            ]
        )
    context = ProviderContext(
        project_dir=loaded.project_dir,
        state_dir=state_dir,
        stack=loaded.stack,
        progress=progress,
        target="local",  # this process trains: nothing is provisioned from here
        settings=loaded.settings,
    )
    try:
        progress("loading the feature set", 0.0)
        data = _load(recorded.outputs, config, address)
        with _importable(loaded.project_dir):
            trained = _fit(config, data, address, context, fingerprints)
    except StepFailed as failed:
        raise DiagnosticsError([failed.diagnostic]) from failed
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return None
    result = FitResult(
        directory=target_dir,
        address=str(address),
        run_id=run_id,
        framework=str(trained.framework),
        params=dict(trained.params),
        epochs=_epochs(trained),
        duration_s=float(trained.duration_s),
        hardware={**dict(trained.hardware), **_toolchain_note(fingerprints, expected)},
        fingerprints=fingerprints,
    )
    _write(result, trained)
    return result


def _check_expected(
    address: Address, found: Mapping[str, str], expected: Mapping[str, str]
) -> None:
    differ = sorted(
        key
        for key in set(found) | set(expected)
        if key.startswith(_STRICT_PREFIXES) and expected and found.get(key) != expected.get(key)
    )
    if not differ:
        return
    raise ConfigError(
        [
            Diagnostic.error(
                f"{address}: the model composed here is not the one apply planned "
                f"({', '.join(differ)} differ)",
                "The training pod composes the stack's config (with apply's command-line "
                "overrides) from the project in its image: rebuild the image from the current "
                f"project, or set models.{address.name}.training.where: local.",
                address=str(address),
                key=f"models.{address.name}",
            )
        ]
    )


def _toolchain_note(found: Mapping[str, str], expected: Mapping[str, str] | None) -> dict[str, str]:
    wanted = (expected or {}).get("toolchain")
    if wanted is None or found.get("toolchain") == wanted:
        return {}
    return {"toolchain_note": "the image's library or Python versions differ from apply's"}


def _epochs(trained: Any) -> list[dict[str, Any]]:
    from mlform.registry.runs import epoch_dicts

    return epoch_dicts(trained.epochs)


def _write(result: FitResult, trained: Any) -> None:
    from mlform.registry.jsonio import write_json

    if result.directory.exists():  # a retried pod of the same run starts over
        shutil.rmtree(result.directory)
    trained.save(result.model_dir)
    write_json(
        result.directory / RESULT_FILE,
        {
            "format_version": RESULT_FORMAT,
            "address": result.address,
            "run_id": result.run_id,
            "framework": result.framework,
            "params": dict(result.params),
            "epochs": result.epochs,
            "duration_s": result.duration_s,
            "hardware": dict(result.hardware),
            "fingerprints": dict(result.fingerprints),
        },
    )


def read_result(directory: Path) -> FitResult:
    """The result a finished run wrote to ``directory``; ValueError when there is none."""
    path = directory / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"no training result at {path}: {exc}") from exc
    if data.get("format_version") != RESULT_FORMAT:
        raise ValueError(f"{path}: unknown format_version {data.get('format_version')!r}")
    if not (directory / MODEL_DIR).is_dir():
        raise ValueError(f"{path}: the model directory {directory / MODEL_DIR} is missing")
    return FitResult(
        directory=directory,
        address=str(data["address"]),
        run_id=str(data["run_id"]),
        framework=str(data["framework"]),
        params=dict(data.get("params") or {}),
        epochs=[dict(e) for e in data.get("epochs") or []],
        duration_s=float(data.get("duration_s") or 0.0),
        hardware=dict(data.get("hardware") or {}),
        fingerprints={str(k): str(v) for k, v in dict(data.get("fingerprints") or {}).items()},
    )


def trained_model(result: FitResult) -> Any:
    """``result`` as the ``TrainedModel`` local training returns (its ``save`` copies the
    files the run wrote), so evaluation and registration are the same for both."""
    from mlform.training.types import EpochMetrics, Predictor, TrainedModel

    predictor: Predictor
    if result.framework == "sklearn":
        from mlform.training.sklearn_trainer import load_sklearn

        predictor = load_sklearn(result.model_dir)
    else:
        from mlform.training.torch_trainer import load_torch

        predictor = load_torch(result.model_dir)

    def save(directory: Path) -> list[Path]:
        shutil.copytree(result.model_dir, directory, dirs_exist_ok=True)
        return sorted(p for p in directory.rglob("*") if p.is_file())

    return TrainedModel(
        framework="torch" if result.framework == "torch" else "sklearn",
        predictor=predictor,
        params=dict(result.params),
        epochs=tuple(
            EpochMetrics(
                epoch=int(e["epoch"]),
                metrics={
                    str(k): float(v)
                    for k, v in dict(e.get("metrics") or {}).items()
                    if v is not None
                },
                seconds=float(e.get("seconds") or 0.0),
            )
            for e in result.epochs
        ),
        duration_s=result.duration_s,
        hardware=dict(result.hardware),
        save=save,
    )

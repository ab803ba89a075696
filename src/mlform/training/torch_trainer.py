"""The PyTorch trainer: a ``framework: torch`` model spec and a feature set -> TrainedModel.

* The module comes from ``module._target_`` called with ``in_features`` (input columns) and
  ``out_features`` (the number of classes for ``cross_entropy``, else 1); the optimizer from
  ``trainer.optimizer`` with the module's parameters; the optional scheduler from
  ``trainer.scheduler`` with the optimizer, stepped once per epoch (``ReduceLROnPlateau``
  with the validation loss).
* Inputs are standardized with the training rows' per-column mean and standard deviation;
  the statistics are part of the artifact and the predictor applies them
  (:mod:`mlform.training.torch_artifact`), so a module never sees raw scales.
* Validation uses ``data.validation``, or a seeded 10 % of ``train`` held out when the
  feature set has no validation split. Early stopping watches ``val_loss`` (or
  ``val_accuracy``) and the best weights are kept.
* Training is seeded (Python, NumPy, torch; the previous RNG states are restored after) and,
  with ``deterministic``, runs under ``torch.use_deterministic_algorithms``: two runs with
  the same seed give identical weights on the CPU.
* Every ``checkpoint_every`` epochs (default 1) ``checkpoint_dir/last.pt`` is written; a
  later run with the same spec and data resumes from it and ends where an uninterrupted run
  would (:mod:`mlform.training.checkpoints`). The checkpoint is removed on success.
* Launched by ``torchrun`` with ``WORLD_SIZE`` > 1, the process is one rank of a
  data-parallel run (:mod:`mlform.training.distributed`): ``trainer.batch_size`` is per
  rank, metrics are averaged over the ranks, only rank 0 writes checkpoints, and only rank
  0's :class:`TrainedModel` is ``primary`` (the others' ``save`` writes nothing).
  Without ``WORLD_SIZE`` (or with 1) training is the single-process run described above.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from mlform.config.instantiate import instantiate
from mlform.diagnostics import Diagnostic
from mlform.providers.base import StepFailed
from mlform.spec.models import Trainer
from mlform.training import checkpoints
from mlform.training.boundary import user_code
from mlform.training.device import (
    DeviceError,
    Precision,
    deterministic_mode,
    hardware_info,
    seeded,
    select_device,
    select_precision,
)
from mlform.training.distributed import (
    DataParallel,
    DistributedError,
    launch_from_env,
    process_group,
    rank_device,
)
from mlform.training.losses import LossChoiceError, Objective, select_objective
from mlform.training.torch_artifact import TorchPredictor, load_torch, save_torch
from mlform.training.torch_loop import EarlyStopper, Loop, Tensors
from mlform.training.types import Array, EpochMetrics, TrainedModel, TrainingData

__all__ = ["HOLDOUT_FRACTION", "load_torch", "train_torch"]

Progress = Callable[[str, float | None], None]
HOLDOUT_FRACTION = 0.1


class _Fail:
    """Builds StepFailed errors for one model, keyed under its config."""

    def __init__(self, address: str) -> None:
        self.address = address
        kind, _, name = address.partition(".")
        self.key = f"models.{name}" if kind == "model" and name else None

    def __call__(self, field: str | None, summary: str, detail: str) -> StepFailed:
        key = f"{self.key}.{field}" if self.key and field else self.key
        return StepFailed(
            Diagnostic.error(f"{self.address}: {summary}", detail, key=key, address=self.address)
        )

    def field(self, name: str) -> str | None:
        return f"{self.key}.{name}" if self.key else None


def train_torch(
    spec: Mapping[str, Any],
    data: TrainingData,
    *,
    progress: Progress,
    checkpoint_dir: Path,
    gpu_requested: bool,
    address: str = "model",
) -> TrainedModel:
    """Train the torch model ``spec`` (a ``framework: torch`` model config) on ``data``."""
    started = time.perf_counter()
    fail = _Fail(address)
    trainer = _trainer(spec, fail)
    module_block = _block(spec.get("module"))
    try:
        objective = select_objective(trainer.loss, data.task, len(data.classes))
    except LossChoiceError as error:
        raise fail("trainer.loss", str(error), "Change trainer.loss.") from error
    try:
        device = select_device(trainer.device, gpu_requested=gpu_requested)
        precision = select_precision(trainer.precision, device)
    except DeviceError as error:
        raise fail("trainer.device", str(error), "Change trainer.device.") from error
    try:
        launch = launch_from_env()
        device = rank_device(device, launch)
    except DistributedError as error:
        raise fail(None, str(error), _TORCHRUN_HELP) from error
    train_x, train_y, val_x, val_y = _split(data, trainer.seed, fail)
    mean, std = _standardization(train_x)
    train = _tensors(train_x, train_y, mean, std, objective, device, ids=False)
    val = _tensors(val_x, val_y, mean, std, objective, device, ids=objective.classification)
    trainer_doc = trainer.model_dump(by_alias=True, mode="json")
    settings: dict[str, Any] = {"device": device.type, "precision": precision.used}
    if launch is not None:  # a checkpoint resumes only under the same number of ranks
        settings["world_size"] = launch.world_size
    fingerprint = checkpoints.fingerprint(
        {
            "module": module_block,
            "trainer": {k: v for k, v in trainer_doc.items() if k != "checkpoint_every"},
        },
        data,
        settings,
    )
    in_features = train_x.shape[1]
    with ExitStack() as joined:
        try:
            group = joined.enter_context(process_group(launch, device))
        except DistributedError as error:
            raise fail(None, str(error), _TORCHRUN_HELP) from error
        parallel = None if group is None else DataParallel(group, trainer.seed)
        with deterministic_mode(trainer.deterministic, device), seeded(trainer.seed, device):
            module = _module(module_block, in_features, objective, device, fail)
            run = _Run(trainer, module, objective, precision, device, fail, progress, parallel)
            resumed = run.resume(checkpoint_dir, fingerprint)
            run.fit(train, val, checkpoint_dir, fingerprint)
        run.finish(checkpoint_dir)
    module = module.cpu().eval()
    meta = {
        "module": module_block,
        "in_features": in_features,
        "out_features": objective.out_features,
        "loss": objective.name,
        "task": data.task,
        "classes": list(data.classes),
        "feature_names": list(data.feature_names),
        "label": data.label,
        "input_mean": [float(v) for v in mean],
        "input_std": [float(v) for v in std],
        "torch": torch.__version__,
    }
    primary = parallel is None or parallel.primary
    hardware = hardware_info(
        device,
        precision,
        world_size=1 if group is None else group.world_size,
        backend=None if group is None else group.backend,
    )
    return TrainedModel(
        framework="torch",
        predictor=TorchPredictor(module, objective, meta),
        params={
            "module": module_block,
            "trainer": trainer_doc,
            "in_features": in_features,
            "out_features": objective.out_features,
            "standardized_inputs": True,
            "best_epoch": run.best_epoch,
        },
        epochs=tuple(run.history),
        duration_s=time.perf_counter() - started,
        hardware=hardware,
        save=(lambda directory: save_torch(directory, module, meta)) if primary else _no_files,
        resumed_from_epoch=resumed,
        primary=primary,
    )


_TORCHRUN_HELP = (
    "Data-parallel training runs under torchrun, which sets WORLD_SIZE, RANK, LOCAL_RANK, "
    "MASTER_ADDR and MASTER_PORT for every process (e.g. torchrun --standalone "
    "--nproc-per-node=2 ...); unset WORLD_SIZE to train in a single process."
)


def _no_files(_directory: Path) -> list[Path]:
    """The ``save`` of ranks other than 0: rank 0 writes the one artifact."""
    return []


class _Run:
    """One training run: the module, its optimizer and scheduler, the epochs so far."""

    def __init__(
        self,
        trainer: Trainer,
        module: nn.Module,
        objective: Objective,
        precision: Precision,
        device: torch.device,
        fail: _Fail,
        progress: Progress,
        parallel: DataParallel | None = None,
    ) -> None:
        self.trainer, self.module, self.device = trainer, module, device
        self.fail, self.progress, self.parallel = fail, progress, parallel
        self.primary = parallel is None or parallel.primary
        key = fail.field("trainer.optimizer")
        with user_code("building the optimizer", fail.address, key=key):
            optimizer = instantiate(_block(trainer.optimizer), module.parameters())
        self.scheduler: Any = None
        if trainer.scheduler is not None:
            key = fail.field("trainer.scheduler")
            with user_code("building the scheduler", fail.address, key=key):
                self.scheduler = instantiate(_block(trainer.scheduler), optimizer)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise fail(
                "trainer.optimizer",
                f"trainer.optimizer built a {type(optimizer).__name__}, not an optimizer",
                "Name a torch.optim optimizer (or a subclass) in _target_.",
            )
        generator = torch.Generator().manual_seed(trainer.seed)
        self.loop = Loop(
            module, optimizer, objective, precision, trainer.batch_size, generator, parallel
        )
        self.stopper = _stopper(trainer, objective, fail)
        self.history: list[EpochMetrics] = []
        self.first_epoch = 1

    @property
    def best_epoch(self) -> int | None:
        return self.stopper.best_epoch if self.stopper and self.stopper.best_epoch else None

    def resume(self, directory: Path, fingerprint: str) -> int | None:
        state = checkpoints.load_checkpoint(directory, fingerprint) if self.primary else None
        if self.parallel is not None:  # every rank resumes from what rank 0 read
            state = self.parallel.from_primary(state)
        if state is None:
            return None
        self.module.load_state_dict(state["module"])
        self.loop.restore(state["loop"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.stopper is not None:
            self.stopper.restore(state["stopper"])
        self.history = [EpochMetrics(e, m, s) for e, m, s in state["history"]]
        checkpoints.restore_rng(state["rng"], self.device)
        epoch = int(state["epoch"])
        self.first_epoch = epoch + 1
        self.progress(f"resumed from the checkpoint of epoch {epoch}", epoch / self.epochs)
        return epoch

    @property
    def epochs(self) -> int:
        return self.trainer.epochs

    def fit(self, train: Tensors, val: Tensors, directory: Path, fingerprint: str) -> None:
        every = self.trainer.checkpoint_every or 1
        address, key = self.fail.address, self.fail.field("module")
        for epoch in range(self.first_epoch, self.epochs + 1):
            began = time.perf_counter()
            with user_code("training", address, key=key):
                train_loss = self.loop.train_epoch(train, epoch)
                metrics = {"train_loss": train_loss, **self.loop.evaluate(val)}
                self._schedule(metrics)
            self._check_finite(epoch, metrics)
            stop = self.stopper is not None and self.stopper.update(epoch, metrics, self.module)
            self.history.append(EpochMetrics(epoch, metrics, time.perf_counter() - began))
            if epoch % every == 0 and epoch < self.epochs and not stop:
                self._checkpoint(directory, epoch, fingerprint)
            shown = " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
            self.progress(f"epoch {epoch}/{self.epochs} {shown}", epoch / self.epochs)
            if stop:
                self.progress(f"early stop at epoch {epoch}", 1.0)
                break
        if self.stopper is not None and self.stopper.best_weights is not None:
            self.module.load_state_dict(self.stopper.best_weights)

    def _checkpoint(self, directory: Path, epoch: int, fingerprint: str) -> None:
        """Rank 0 writes the checkpoint; the other ranks wait until it is on disk."""
        if self.primary:
            checkpoints.save_checkpoint(directory, self._state(epoch, fingerprint))
        if self.parallel is not None:
            self.parallel.barrier()

    def finish(self, directory: Path) -> None:
        """Remove the checkpoint of a finished run (rank 0), all ranks done first."""
        if self.parallel is not None:
            self.parallel.barrier()
        if self.primary:
            checkpoints.remove_checkpoint(directory)

    def _schedule(self, metrics: Mapping[str, float]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metrics["val_loss"])
        else:
            self.scheduler.step()

    def _check_finite(self, epoch: int, metrics: Mapping[str, float]) -> None:
        for name in ("train_loss", "val_loss"):
            if not math.isfinite(metrics[name]):
                lr = self.loop.optimizer.param_groups[0].get("lr")
                raise self.fail(
                    "trainer.optimizer.lr",
                    f"training diverged at epoch {epoch}/{self.epochs}: {name} is {metrics[name]}",
                    f"Lower the learning rate (trainer.optimizer.lr is {lr}); also check the "
                    "inputs and targets for extreme values and that the module returns raw "
                    "logits or values (the loss applies the softmax or sigmoid).",
                )

    def _state(self, epoch: int, fingerprint: str) -> dict[str, Any]:
        return {
            "format": checkpoints.FORMAT_VERSION,
            "fingerprint": fingerprint,
            "epoch": epoch,
            "module": self.module.state_dict(),
            "loop": self.loop.state(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "stopper": self.stopper.state() if self.stopper is not None else None,
            "history": [(e.epoch, dict(e.metrics), e.seconds) for e in self.history],
            "rng": checkpoints.rng_state(self.device),
        }


def _trainer(spec: Mapping[str, Any], fail: _Fail) -> Trainer:
    try:
        return Trainer.model_validate(spec.get("trainer") or {})
    except ValidationError as error:
        raise fail("trainer", "invalid trainer block", str(error)) from error


def _block(value: Any) -> dict[str, Any]:
    """A ``_target_`` block as a plain dict (from a dict or a validated TargetSpec)."""
    if hasattr(value, "model_dump"):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, mode="json")
        return dumped
    return dict(value or {})


def _stopper(trainer: Trainer, objective: Objective, fail: _Fail) -> EarlyStopper | None:
    rule = trainer.early_stopping
    if rule is None:
        return None
    known = ["val_loss", "train_loss", *(["val_accuracy"] if objective.classification else [])]
    if rule.metric not in known:
        raise fail(
            "trainer.early_stopping.metric",
            f"early stopping cannot watch {rule.metric!r}",
            f"Use one of: {', '.join(known)}.",
        )
    return EarlyStopper(rule.metric, rule.patience, rule.min_delta)


def _module(
    block: Mapping[str, Any],
    in_features: int,
    objective: Objective,
    device: torch.device,
    fail: _Fail,
) -> nn.Module:
    with user_code("building the module", fail.address, key=fail.field("module")):
        module = instantiate(block, in_features=in_features, out_features=objective.out_features)
    if not isinstance(module, nn.Module):
        raise fail(
            "module",
            f"module._target_ built a {type(module).__name__}, not a torch.nn.Module",
            "Name a torch.nn.Module subclass taking in_features and out_features.",
        )
    module = module.to(device)
    probe = torch.zeros((2, in_features), device=device)
    with user_code("training", fail.address, key=fail.field("module")), torch.no_grad():
        was_training = module.training
        shape = tuple(module.eval()(probe).shape)
        module.train(was_training)
    expected = {(2, objective.out_features)} | ({(2,)} if objective.out_features == 1 else set())
    if shape not in expected:
        raise fail(
            "module",
            f"the module returns shape {shape} for 2 rows; loss {objective.name} needs "
            f"(2, {objective.out_features})",
            "Make forward return one row per input with out_features columns.",
        )
    return module


def _split(data: TrainingData, seed: int, fail: _Fail) -> tuple[Array, Array, Array, Array]:
    if data.validation is not None:
        parts = (data.train.x, data.train.y, data.validation.x, data.validation.y)
    else:
        rows = data.train.x.shape[0]
        held = max(1, round(rows * HOLDOUT_FRACTION))
        if rows - held < 1:
            raise fail(None, f"too few training rows ({rows})", "Add rows to the feature set.")
        order = np.random.default_rng(seed).permutation(rows)
        train, val = np.sort(order[held:]), np.sort(order[:held])
        parts = (data.train.x[train], data.train.y[train], data.train.x[val], data.train.y[val])
    bad = ~(np.isfinite(parts[0]).all(axis=0) & np.isfinite(parts[2]).all(axis=0))
    if bad.any():
        columns = [data.feature_names[i] for i in np.flatnonzero(bad)]
        raise fail(
            None,
            f"input columns {columns} have missing or infinite values",
            "A torch model needs complete inputs: impute or filter those rows in the "
            "feature set, or list the columns in exclude_columns.",
        )
    if data.task == "regression" and not (
        np.isfinite(parts[1]).all() and np.isfinite(parts[3]).all()
    ):
        raise fail(
            None,
            f"label {data.label!r} has missing or infinite values",
            "Filter out the rows without a label in the feature set.",
        )
    return parts


def _standardization(x: Array) -> tuple[Array, Array]:
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std < 1e-12] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _tensors(
    x: Array,
    y: Array,
    mean: Array,
    std: Array,
    objective: Objective,
    device: torch.device,
    *,
    ids: bool,
) -> Tensors:
    """Standardized inputs, targets in the loss's dtype and (``ids``) class ids on ``device``."""
    inputs = torch.from_numpy(np.ascontiguousarray((x - mean) / std, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(y)).to(objective.target_dtype)
    class_ids = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device) if ids else None
    return Tensors(inputs.to(device), targets.to(device), class_ids)

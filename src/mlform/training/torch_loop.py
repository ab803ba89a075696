"""The hot loop of the torch trainer: epochs over in-memory tensors, validation, early stop.

Batches are contiguous slices of the training tensors shuffled once per epoch by a seeded
``torch.Generator`` (one gather per epoch instead of a ``DataLoader`` collating rows one by
one; see ``benchmarks/training_overhead.py``). Per-batch losses stay on the device and are
read once per epoch, so the loop never waits on the GPU inside an epoch.

In a data-parallel run (``parallel``, see :mod:`mlform.training.distributed`) the module
trains under ``DistributedDataParallel`` on this rank's share of each epoch's rows, and the
epoch's training loss and the validation metrics are summed over the ranks, so every rank
returns the same numbers. Evaluation runs the bare module on this rank's validation share
(no collective inside the forward pass, whose count could differ between ranks).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlform.training.device import Precision
from mlform.training.distributed import DataParallel
from mlform.training.losses import Objective

__all__ = ["EarlyStopper", "Loop", "Tensors"]

_EVAL_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class Tensors:
    """Inputs, targets (in the loss's dtype) and class ids (classification) on the device."""

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor | None


class Loop:
    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        precision: Precision,
        batch_size: int,
        generator: torch.Generator,
        parallel: DataParallel | None = None,
    ) -> None:
        self.module, self.optimizer, self.objective = module, optimizer, objective
        self.batch_size, self.generator, self.parallel = batch_size, generator, parallel
        # What the training step calls: the module itself, or its DDP wrapper.
        self.trained = module if parallel is None else parallel.wrap(module)
        self.autocast = precision.autocast
        self.scaler = torch.amp.GradScaler("cuda") if precision.scaled else None

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast)

    def train_epoch(self, data: Tensors, epoch: int = 0) -> float:
        """One pass over ``data`` (this rank's share of it) in shuffled batches; the mean
        training loss (over all ranks)."""
        module, optimizer, objective = self.trained, self.optimizer, self.objective
        loss_fn, outputs, scaler = objective.loss, objective.outputs, self.scaler
        module.train()
        rows, size = data.x.shape[0], self.batch_size
        if self.parallel is None:
            order = torch.randperm(rows, generator=self.generator).to(data.x.device)
        else:
            order = self.parallel.epoch_order(rows, epoch).to(data.x.device)
            rows = int(order.shape[0])
        xs, ys = data.x.index_select(0, order), data.y.index_select(0, order)
        losses: list[torch.Tensor] = []
        for start in range(0, rows, size):
            with self._precision():
                loss = loss_fn(outputs(module(xs[start : start + size])), ys[start : start + size])
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            else:
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                scaler.step(optimizer)
                scaler.update()
            losses.append(loss.detach())
        per_batch = torch.stack(losses).float()
        full, rest = divmod(rows, size)
        total = per_batch[:full].sum() * size + (per_batch[full] * rest if rest else 0.0)
        if self.parallel is not None:
            summed, counted = self.parallel.sum([float(total), float(rows)])
            return summed / counted
        return float(total) / rows

    def evaluate(self, data: Tensors) -> dict[str, float]:
        """Validation loss (and accuracy for classification) with the module in eval mode."""
        if self.parallel is not None:
            return self._evaluate_shared(data)
        out = self._outputs(data.x)
        metrics = {"val_loss": float(self.objective.loss(out, data.y))}
        if data.ids is not None:
            correct = self.objective.predictions(out) == data.ids
            metrics["val_accuracy"] = float(correct.float().mean())
        return metrics

    def _evaluate_shared(self, data: Tensors) -> dict[str, float]:
        """:meth:`evaluate` over the validation shares of all ranks, weighted by rows."""
        assert self.parallel is not None
        share = self.parallel.validation_share(int(data.x.shape[0]))
        x, y = data.x[share], data.y[share]
        rows = int(x.shape[0])
        loss_sum = correct = 0.0
        if rows:
            out = self._outputs(x)
            loss_sum = float(self.objective.loss(out, y)) * rows
            if data.ids is not None:
                hits = self.objective.predictions(out) == data.ids[share]
                correct = float(hits.float().sum())
        loss_sum, correct, total = self.parallel.sum([loss_sum, correct, float(rows)])
        metrics = {"val_loss": loss_sum / total}
        if data.ids is not None:
            metrics["val_accuracy"] = correct / total
        return metrics

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        self.module.eval()
        chunks = []
        with torch.inference_mode(), self._precision():
            for start in range(0, x.shape[0], _EVAL_CHUNK):
                raw = self.module(x[start : start + _EVAL_CHUNK])
                chunks.append(self.objective.outputs(raw).float())
        return torch.cat(chunks)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


@dataclass(slots=True)
class EarlyStopper:
    """Tracks the best value of ``metric`` (lower is better unless it is an accuracy)."""

    metric: str
    patience: int | None  # None: never stop, only remember the best weights
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def maximize(self) -> bool:
        return "accuracy" in self.metric

    def update(self, epoch: int, metrics: dict[str, float], module: nn.Module) -> bool:
        """Record ``metrics`` of ``epoch``; True when training should stop."""
        value = metrics[self.metric]
        improved = self.best is None or (
            value > self.best + self.min_delta
            if self.maximize
            else value < self.best - self.min_delta
        )
        if improved and math.isfinite(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_weights": self.best_weights,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs, self.best_weights = state["bad_epochs"], state["best_weights"]

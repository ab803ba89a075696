"""The training objectives a torch model may name in ``trainer.loss``.

=============== ============== ============ =================================================
loss            task           out_features targets / probabilities
=============== ============== ============ =================================================
cross_entropy   classification n classes    class ids (int64) / softmax
bce             classification 1            0/1 as float32 (binary only) / sigmoid of logit
mse, l1         regression     1            float32 values / none
=============== ============== ============ =================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["LOSSES", "LossChoiceError", "Objective", "select_objective"]

LOSSES = ("cross_entropy", "bce", "mse", "l1")


class LossChoiceError(ValueError):
    """``trainer.loss`` does not fit the task or the number of classes."""


@dataclass(frozen=True, slots=True)
class Objective:
    name: str
    out_features: int
    classification: bool
    target_dtype: torch.dtype
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def outputs(self, raw: torch.Tensor) -> torch.Tensor:
        """The module's output in the shape the loss expects: (rows,) for one output."""
        return raw.reshape(-1) if self.out_features == 1 else raw

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """Class probabilities (rows, classes) from ``outputs``; None for regression."""
        if self.name == "cross_entropy":
            return torch.softmax(outputs.float(), dim=-1)
        if self.name == "bce":
            positive = torch.sigmoid(outputs.float().reshape(-1))
            return torch.stack((1.0 - positive, positive), dim=1)
        return None

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class ids (classification) or values (regression) from ``outputs``."""
        if self.name == "cross_entropy":
            return outputs.argmax(dim=-1)
        if self.name == "bce":
            return (outputs.reshape(-1) > 0).long()
        return outputs.float().reshape(-1)


def _bce(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(outputs, target)


def select_objective(loss: str, task: str, n_classes: int) -> Objective:
    """The objective for ``loss``; :class:`LossChoiceError` saying what to write instead."""
    if loss not in LOSSES:
        raise LossChoiceError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if task == "classification":
        if loss in ("mse", "l1"):
            raise LossChoiceError(
                f"loss {loss!r} is for regression but the task is classification; "
                "use cross_entropy (any number of classes) or bce (two classes)"
            )
        if loss == "bce":
            if n_classes != 2:
                raise LossChoiceError(
                    f"loss 'bce' needs exactly two classes, the label has {n_classes}; "
                    "use cross_entropy"
                )
            return Objective("bce", 1, True, torch.float32, _bce)
        return Objective("cross_entropy", n_classes, True, torch.int64, F.cross_entropy)
    if loss in ("cross_entropy", "bce"):
        raise LossChoiceError(
            f"loss {loss!r} is for classification but the task is regression; "
            "set trainer.loss to mse or l1"
        )
    return Objective(loss, 1, False, torch.float32, F.mse_loss if loss == "mse" else F.l1_loss)

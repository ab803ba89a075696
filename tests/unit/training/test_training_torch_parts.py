"""MLP shapes, device and precision selection, loss selection, determinism helpers."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mlform.torch.mlp import MLP
from mlform.training import device as device_mod
from mlform.training.device import (
    DeviceError,
    deterministic_mode,
    seeded,
    select_device,
    select_precision,
)
from mlform.training.losses import LossChoiceError, select_objective


@pytest.mark.parametrize(("hidden", "out"), [((64, 32), 3), ((), 1), ((8,), 1)])
def test_mlp_shapes(hidden: tuple[int, ...], out: int) -> None:
    model = MLP(5, out, hidden=hidden, dropout=0.2, activation="gelu")
    assert model(torch.zeros(7, 5)).shape == (7, out)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, out]
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules()) == bool(hidden)


@pytest.mark.parametrize(
    "kwargs",
    [{"activation": "swishy"}, {"dropout": 1.0}, {"hidden": [0]}, {"in_features": 0}],
)
def test_mlp_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"in_features": 3, "out_features": 2, **kwargs}
    with pytest.raises(ValueError):
        MLP(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requested", "gpu_requested", "available", "expected"),
    [
        ("auto", True, True, "cuda"),
        ("auto", True, False, "cpu"),
        ("auto", False, True, "cpu"),
        ("cpu", True, True, "cpu"),
        ("cuda", False, True, "cuda"),
    ],
)
def test_device_selection(
    monkeypatch: pytest.MonkeyPatch,
    requested: str,
    gpu_requested: bool,
    available: bool,
    expected: str,
) -> None:
    monkeypatch.setattr(device_mod.torch.cuda, "is_available", lambda: available)
    assert select_device(requested, gpu_requested=gpu_requested).type == expected


def test_cuda_without_a_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod.torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        select_device("cuda", gpu_requested=True)


def test_bf16_on_cpu_trains_in_fp32() -> None:
    precision = select_precision("bf16", torch.device("cpu"))
    assert (precision.used, precision.autocast) == ("fp32", None)
    assert precision.note == "bf16 requested; the CPU trains in fp32"


def test_bf16_on_cuda_autocasts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod.torch.cuda, "is_bf16_supported", lambda: True)
    precision = select_precision("bf16", torch.device("cuda"))
    assert (precision.used, precision.autocast) == ("bf16", torch.bfloat16)
    assert select_precision("fp16", torch.device("cuda")).scaled


@pytest.mark.parametrize(
    ("loss", "task", "classes", "out", "dtype"),
    [
        ("cross_entropy", "classification", 3, 3, torch.int64),
        ("bce", "classification", 2, 1, torch.float32),
        ("mse", "regression", 0, 1, torch.float32),
        ("l1", "regression", 0, 1, torch.float32),
    ],
)
def test_loss_selection(loss: str, task: str, classes: int, out: int, dtype: torch.dtype) -> None:
    objective = select_objective(loss, task, classes)
    assert (objective.out_features, objective.target_dtype) == (out, dtype)


@pytest.mark.parametrize(
    ("loss", "task", "classes", "message"),
    [
        ("bce", "classification", 3, "exactly two classes"),
        ("mse", "classification", 2, "for regression"),
        ("cross_entropy", "regression", 0, "set trainer.loss to mse or l1"),
        ("hinge", "regression", 0, "unknown loss"),
    ],
)
def test_loss_mismatch(loss: str, task: str, classes: int, message: str) -> None:
    with pytest.raises(LossChoiceError, match=message):
        select_objective(loss, task, classes)


def test_probabilities_from_one_logit() -> None:
    objective = select_objective("bce", "classification", 2)
    probabilities = objective.probabilities(torch.tensor([0.0, 100.0]))
    assert probabilities is not None
    assert probabilities.tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert objective.predictions(torch.tensor([-1.0, 1.0])).tolist() == [0, 1]


def test_deterministic_mode_restores_the_previous_setting() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ or before


def test_seeded_is_repeatable_and_restores_global_rng() -> None:
    random.seed(1)
    expected = random.random()
    random.seed(1)
    with seeded(5, torch.device("cpu")):
        first = (random.random(), np.random.rand(), torch.rand(1).item())
    with seeded(5, torch.device("cpu")):
        second = (random.random(), np.random.rand(), torch.rand(1).item())
    assert first == second
    assert random.random() == expected

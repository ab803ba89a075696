"""The user-code boundary: which frame it blames and how it reports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlform.config.instantiate import TargetError, instantiate
from mlform.errors import MlformError
from mlform.providers.base import StepFailed
from mlform.training.boundary import user_code
from mlform.training.torch_trainer import train_torch
from mlform.training.types import Split, TrainingData


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def test_names_model_step_and_the_innermost_user_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _user_module(
        tmp_path,
        monkeypatch,
        "boundary_user_mod",
        """\
        import json

        def helper():
            return json.loads("{")

        def build():
            return helper()
        """,
    )
    with pytest.raises(StepFailed) as failed, user_code("training", "model.churn"):
        instantiate({"_target_": "boundary_user_mod.build"})
    diagnostic = failed.value.diagnostic
    assert diagnostic.summary.startswith(
        "model.churn: training failed in user code: JSONDecodeError: "
    )
    # json's own frames are library frames: the blame lands on helper(), line 4.
    assert (diagnostic.file, diagnostic.line) == (str(path), 4)
    assert f"{path}:4 in helper" in diagnostic.detail
    assert "Fix boundary_user_mod.py:4" in diagnostic.detail
    assert diagnostic.address == "model.churn"


def test_error_at_import_time_is_user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _user_module(tmp_path, monkeypatch, "boundary_broken_mod", "x = 1\ny = undefined\n")
    with pytest.raises(StepFailed) as failed, user_code("building the module", "model.m"):
        instantiate({"_target_": "boundary_broken_mod.Thing"})
    assert "NameError" in failed.value.diagnostic.summary
    assert (failed.value.diagnostic.file, failed.value.diagnostic.line) == (str(path), 2)


def test_library_only_error_says_no_user_frame(tmp_path: Path) -> None:
    # Called through the trainer, so that no frame of this test is inside the boundary.
    x = np.zeros((10, 3), dtype=np.float32)
    split = Split(x, np.arange(10) % 2)
    data = TrainingData("classification", ("a", "b", "c"), "y", split, split, classes=(0, 1))
    spec = {"module": {"_target_": "mlform.torch.mlp.MLP", "activation": "nope"}}
    with pytest.raises(StepFailed) as failed:
        train_torch(
            {**spec, "trainer": {"loss": "bce"}},
            data,
            progress=lambda _m, _f: None,
            checkpoint_dir=tmp_path,
            gpu_requested=False,
            address="model.m",
        )
    diagnostic = failed.value.diagnostic
    assert diagnostic.summary.startswith(
        "model.m: building the module failed: ValueError: unknown activation"
    )
    assert diagnostic.key == "models.m.module"
    assert "No frame of your own code" in diagnostic.detail
    assert diagnostic.file is None


def test_bad_target_becomes_a_config_diagnostic() -> None:
    with pytest.raises(StepFailed) as failed, user_code("building", "model.m", key="models.m.x"):
        instantiate({"_target_": "torch.optim.AdamWW"})
    diagnostic = failed.value.diagnostic
    assert "torch.optim.AdamWW: cannot be imported" in diagnostic.summary
    assert diagnostic.key == "models.m.x"


def test_mlform_errors_and_interrupts_pass_through() -> None:
    with pytest.raises(MlformError), user_code("training", "model.m"):
        raise MlformError("ours")
    with pytest.raises(KeyboardInterrupt), user_code("training", "model.m"):
        raise KeyboardInterrupt


def test_instantiate_passes_extra_arguments_and_checks_keys() -> None:
    built = instantiate({"_target_": "builtins.dict", "a": [1, 2]}, b=3)
    assert built == {"a": [1, 2], "b": 3} and type(built["a"]) is list
    nested = instantiate(
        {"_target_": "builtins.dict", "inner": {"_target_": "fractions.Fraction", "numerator": 1}}
    )
    assert nested["inner"] == 1
    with pytest.raises(TargetError, match=r"mlform.torch.mlp.MLP: cannot be called with keys"):
        instantiate({"_target_": "mlform.torch.mlp.MLP", "hiden": [3]}, 3, 1)
    with pytest.raises(TargetError, match="no module named 'nowhere'"):
        instantiate({"_target_": "nowhere.Thing"})
    with pytest.raises(TargetError, match="no _target_"):
        instantiate({"lr": 1})

"""Real training on scikit-learn's bundled data, written as a feature set's Parquet splits."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

from mlform.providers.base import StepFailed
from mlform.training.data import load_training_data
from mlform.training.sklearn_trainer import load_sklearn, train_sklearn
from mlform.training.torch_trainer import load_torch, train_torch
from mlform.training.types import TrainingData

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _features(frame: pd.DataFrame, directory: Path, label: str, stratify: bool) -> dict[str, Any]:
    """Outputs shaped like the features provider's: entity, sensitive, splits."""
    frame = frame.copy()
    frame.insert(0, "sample_id", np.arange(len(frame)))
    frame["sex"] = np.where(np.arange(len(frame)) % 2 == 0, "F", "M")
    train, test = train_test_split(
        frame, test_size=0.2, random_state=42, stratify=frame[label] if stratify else None
    )
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, part in (("train", train), ("test", test)):
        path = directory / f"{name}.parquet"
        part.sort_values("sample_id").to_parquet(path, index=False)
        splits[name] = str(path)
    return {
        "splits": splits,
        "columns": list(frame.columns),
        "label": label,
        "entity": ["sample_id"],
        "sensitive": ["sex"],
    }


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    outputs = _features(frame, tmp_path_factory.mktemp("cancer"), "target", stratify=True)
    return load_training_data(outputs, task="classification", exclude_columns=["sex"])


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    frame = load_diabetes(as_frame=True).frame
    outputs = _features(frame, tmp_path_factory.mktemp("diabetes"), "target", stratify=False)
    return load_training_data(outputs, task="regression", exclude_columns=[])


def _quiet(_message: str, _fraction: float | None) -> None:
    return None


def _torch_spec(**trainer: Any) -> dict[str, Any]:
    base = {
        "epochs": 12,
        "batch_size": 64,
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.003},
        "loss": "bce",
        "precision": "bf16",
        "seed": 7,
    }
    return {
        "framework": "torch",
        "task": "classification",
        "module": {"_target_": "mlform.torch.mlp.MLP", "hidden": [32, 16], "dropout": 0.1},
        "trainer": {**base, **trainer},
    }


def _train(spec: dict[str, Any], data: TrainingData, tmp: Path, **kw: Any) -> Any:
    kw.setdefault("progress", _quiet)
    return train_torch(
        spec, data, checkpoint_dir=tmp / "ckpt", gpu_requested=False, address="model.dx", **kw
    )


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return dict(model.predictor.module.state_dict())


def test_loader_maps_labels_and_keeps_sensitive(cancer: TrainingData) -> None:
    assert cancer.classes == ("benign", "malignant")
    assert cancer.train.x.dtype == np.float32 and cancer.train.y.dtype == np.int64
    assert "sex" not in cancer.feature_names and "sample_id" not in cancer.feature_names
    assert set(cancer.train.sensitive["sex"]) == {"F", "M"}
    assert cancer.train.ids is not None and len(cancer.train.ids) == len(cancer.train.y)


def test_sklearn_classifier_gives_probabilities(cancer: TrainingData, tmp_path: Path) -> None:
    spec = {"estimator": {"_target_": "sklearn.linear_model.LogisticRegression", "max_iter": 2000}}
    model = train_sklearn(spec, cancer, progress=_quiet, address="model.dx")
    proba = model.predictor.predict_proba(cancer.test.x)
    assert proba is not None and proba.shape == (len(cancer.test.y), 2)
    assert roc_auc_score(cancer.test.y, proba[:, 1]) > 0.97
    files = model.save(tmp_path / "artifact")
    assert {f.name for f in files} == {"model.joblib", "meta.json"}
    loaded = load_sklearn(tmp_path / "artifact")
    np.testing.assert_array_equal(
        loaded.predict(cancer.test.x), model.predictor.predict(cancer.test.x)
    )


def test_user_factory_from_the_example(
    cancer: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    spec = {
        "estimator": {"_target_": "ml.pipelines.make_forest", "n_estimators": 30, "random_state": 0}
    }
    model = train_sklearn(spec, cancer, progress=_quiet, address="model.dx")
    proba = model.predictor.predict_proba(cancer.test.x)
    assert proba is not None and roc_auc_score(cancer.test.y, proba[:, 1]) > 0.95
    assert model.params["resolved"]["forest__n_estimators"] == 30


def test_sklearn_regression(diabetes: TrainingData) -> None:
    spec = {"estimator": {"_target_": "sklearn.linear_model.Ridge", "alpha": 0.1}}
    model = train_sklearn(spec, diabetes, progress=_quiet, address="model.sugar")
    assert model.predictor.predict_proba(diabetes.test.x) is None
    assert r2_score(diabetes.test.y, model.predictor.predict(diabetes.test.x)) > 0.3


def test_torch_mlp_learns_and_round_trips(cancer: TrainingData, tmp_path: Path) -> None:
    messages: list[str] = []
    model = _train(_torch_spec(), cancer, tmp_path, progress=lambda m, _f: messages.append(m))
    accuracy = (model.predictor.predict(cancer.test.x) == cancer.test.y).mean()
    assert accuracy > 0.9
    assert model.hardware["precision_used"] == "fp32" and model.hardware["device"] == "cpu"
    assert [e.epoch for e in model.epochs] == list(range(1, 13))
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(model.epochs[-1].metrics)
    assert messages[0].startswith("epoch 1/12 train_loss=")
    assert not (tmp_path / "ckpt" / "last.pt").exists()
    model.save(tmp_path / "artifact")
    loaded = load_torch(tmp_path / "artifact")
    np.testing.assert_allclose(
        loaded.predict_proba(cancer.test.x), model.predictor.predict_proba(cancer.test.x)
    )


def test_same_seed_same_weights(cancer: TrainingData, tmp_path: Path) -> None:
    spec = _torch_spec(epochs=3)
    first, second = _train(spec, cancer, tmp_path / "a"), _train(spec, cancer, tmp_path / "b")
    for name, tensor in _weights(first).items():
        assert torch.equal(tensor, _weights(second)[name]), name


def test_interrupted_training_resumes_to_the_same_weights(
    cancer: TrainingData, tmp_path: Path
) -> None:
    spec = _torch_spec(
        epochs=6,
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.5},
        early_stopping={"metric": "val_loss", "patience": 50},
    )
    whole = _train(spec, cancer, tmp_path / "whole")

    def interrupt(message: str, _fraction: float | None) -> None:
        if message.startswith("epoch 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(spec, cancer, tmp_path / "cut", progress=interrupt)
    assert (tmp_path / "cut" / "ckpt" / "last.pt").is_file()
    resumed = _train(spec, cancer, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 3
    assert [e.metrics for e in resumed.epochs] == [e.metrics for e in whole.epochs]
    for name, tensor in _weights(whole).items():
        assert torch.equal(tensor, _weights(resumed)[name]), name
    assert not (tmp_path / "cut" / "ckpt" / "last.pt").exists()


def test_a_changed_spec_does_not_resume(cancer: TrainingData, tmp_path: Path) -> None:
    def interrupt(message: str, _fraction: float | None) -> None:
        if message.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(_torch_spec(epochs=4), cancer, tmp_path, progress=interrupt)
    spec = _torch_spec(epochs=4, optimizer={"_target_": "torch.optim.SGD", "lr": 0.01})
    assert _train(spec, cancer, tmp_path).resumed_from_epoch is None


def test_nan_loss_names_the_epoch(cancer: TrainingData, tmp_path: Path) -> None:
    spec = _torch_spec(optimizer={"_target_": "torch.optim.SGD", "lr": 1e30}, precision="fp32")
    with pytest.raises(StepFailed) as failed:
        _train(spec, cancer, tmp_path)
    diagnostic = failed.value.diagnostic
    assert "model.dx: training diverged at epoch 1/12" in diagnostic.summary
    assert "Lower the learning rate" in diagnostic.detail
    assert diagnostic.key == "models.dx.trainer.optimizer.lr"


def test_error_in_user_forward_points_at_the_user_line(
    cancer: TrainingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "user_nets_forward.py"
    source.write_text(
        textwrap.dedent(
            """
            import torch

            class Net(torch.nn.Module):
                def __init__(self, in_features, out_features):
                    super().__init__()
                    self.linear = torch.nn.Linear(in_features, out_features)
                    self.calls = 0

                def forward(self, x):
                    self.calls += 1
                    if self.calls > 3:
                        raise ValueError("shapes went wrong")
                    return self.linear(x)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {**_torch_spec(), "module": {"_target_": "user_nets_forward.Net"}}
    with pytest.raises(StepFailed) as failed:
        _train(spec, cancer, tmp_path)
    diagnostic = failed.value.diagnostic
    assert diagnostic.summary == (
        "model.dx: training failed in user code: ValueError: shapes went wrong"
    )
    assert diagnostic.file == str(source) and diagnostic.line == 13
    assert f"{source}:13 in forward" in diagnostic.detail


def test_early_stopping_stops_before_the_last_epoch(cancer: TrainingData, tmp_path: Path) -> None:
    spec = _torch_spec(epochs=200, early_stopping={"metric": "val_loss", "patience": 2})
    model = _train(spec, cancer, tmp_path)
    assert len(model.epochs) < 200
    best = min(e.metrics["val_loss"] for e in model.epochs)
    assert model.params["best_epoch"] == next(
        e.epoch for e in model.epochs if e.metrics["val_loss"] == best
    )


def test_cross_entropy_on_named_classes(cancer: TrainingData, tmp_path: Path) -> None:
    model = _train(_torch_spec(loss="cross_entropy", epochs=8), cancer, tmp_path)
    proba = model.predictor.predict_proba(cancer.test.x)
    assert proba is not None and proba.shape == (len(cancer.test.y), 2)
    assert roc_auc_score(cancer.test.y, proba[:, 1]) > 0.95


def test_torch_regression(diabetes: TrainingData, tmp_path: Path) -> None:
    spec = {
        **_torch_spec(loss="mse", epochs=5),
        "task": "regression",
    }
    model = _train(spec, diabetes, tmp_path)
    assert model.predictor.predict_proba(diabetes.test.x) is None
    assert model.predictor.predict(diabetes.test.x).shape == diabetes.test.y.shape

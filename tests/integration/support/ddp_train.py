"""One rank of a data-parallel training run, launched by torchrun in test_torch_distributed.

``python ddp_train.py OUT``: trains a small MLP on scikit-learn's breast-cancer data through
:func:`mlform.training.torch_trainer.train_torch` (which joins the process group because
torchrun set ``WORLD_SIZE``), then writes, for this rank:

* ``OUT/rank<R>.json``: the recorded hardware, whether the model is primary, the per-epoch
  metrics and a SHA-256 of the final parameters (equal on every rank when DDP kept them in
  sync);
* ``OUT/artifact-rank<R>/``: whatever ``TrainedModel.save`` wrote (only rank 0 writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from mlform.training.torch_trainer import train_torch
from mlform.training.types import Split, TrainingData

SPEC = {
    "framework": "torch",
    "task": "classification",
    "module": {"_target_": "mlform.torch.mlp.MLP", "hidden": [16], "dropout": 0.1},
    "trainer": {
        "epochs": 40,
        "batch_size": 32,
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.003},
        "loss": "bce",
        "seed": 11,
        "early_stopping": {"metric": "val_loss", "patience": 3},
    },
}


def _data() -> TrainingData:
    bundle = load_breast_cancer()
    x = bundle.data.astype(np.float32)
    y = bundle.target.astype(np.int64)
    names = tuple(str(n).replace(" ", "_") for n in bundle.feature_names)
    return TrainingData(
        task="classification",
        feature_names=names,
        label="diagnosis",
        train=Split(x[:400], y[:400]),
        validation=Split(x[400:480], y[400:480]),
        test=Split(x[480:], y[480:]),
        classes=("malignant", "benign"),
    )


def main(out: Path) -> None:
    rank = os.environ.get("RANK", "0")
    model = train_torch(
        SPEC,
        _data(),
        progress=lambda message, _fraction: print(f"rank {rank}: {message}", flush=True),
        checkpoint_dir=out / "checkpoints",
        gpu_requested=False,
        address="model.ddp",
    )
    digest = hashlib.sha256()
    for name, tensor in sorted(model.predictor.module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    files = model.save(out / f"artifact-rank{rank}")
    report = {
        "rank": rank,
        "primary": model.primary,
        "hardware": dict(model.hardware),
        "epochs": [dict(e.metrics) for e in model.epochs],
        "best_epoch": model.params["best_epoch"],
        "parameters_sha256": digest.hexdigest(),
        "files": sorted(f.name for f in files),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

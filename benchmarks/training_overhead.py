"""Overhead of mlform's PyTorch trainer against hand-written PyTorch loops.

Same model (``mlform.torch.mlp.MLP``), data, batch size, epochs, optimizer and validation
pass per epoch; the runs are interleaved in one process and the median of several repeats
is reported. Baselines:

* ``plain``: the lean hand-written loop (shuffle once per epoch, slice batches from
  in-memory tensors). The overhead target (<= 5 %) is against this one.
* ``dataloader``: the textbook loop over ``DataLoader(TensorDataset(...), shuffle=True)``.

The data is scikit-learn's breast-cancer set repeated with Gaussian noise to ``--rows`` rows.
The trainer runs with its defaults (deterministic algorithms on, a checkpoint every epoch).

    python benchmarks/training_overhead.py [--rows 50000] [--epochs 3] [--repeats 5] [--threads 1]
    python benchmarks/training_overhead.py --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from mlform.torch.mlp import MLP
from mlform.training.torch_trainer import train_torch
from mlform.training.types import Split, TrainingData

HIDDEN = (64, 32)
LR = 1e-3


def make_data(rows: int, seed: int) -> TrainingData:
    base = load_breast_cancer()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base.target), size=rows)
    x = base.data[picks]
    x = x + rng.normal(scale=0.05, size=x.shape) * x.std(axis=0)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)  # already standardized
    y = base.target[picks].astype(np.int64)
    cut = int(rows * 0.9)
    names = tuple(str(n) for n in base.feature_names)
    return TrainingData(
        task="classification",
        feature_names=names,
        label="target",
        train=Split(x[:cut], y[:cut]),
        test=Split(x[cut:], y[cut:]),
        validation=Split(x[cut:], y[cut:]),
        classes=(0, 1),
    )


def _precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _validate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Any) -> float:
    model.eval()
    with torch.inference_mode(), ctx():
        out = model(x).reshape(-1).float()
    return float(F.binary_cross_entropy_with_logits(out, y))


def plain_loop(data: TrainingData, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(data.train.x).to(device)
    y = torch.from_numpy(data.train.y.astype(np.float32)).to(device)
    assert data.validation is not None
    vx = torch.from_numpy(data.validation.x).to(device)
    vy = torch.from_numpy(data.validation.y.astype(np.float32)).to(device)
    model = MLP(x.shape[1], 1, hidden=HIDDEN, dropout=0.1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(args.seed)
    ctx = lambda: _precision(device, args.precision)  # noqa: E731
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        xs, ys = x[order], y[order]
        losses = []
        for start in range(0, x.shape[0], args.batch_size):
            with ctx():
                out = model(xs[start : start + args.batch_size]).reshape(-1)
                loss = F.binary_cross_entropy_with_logits(out, ys[start : start + args.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        float(torch.stack(losses).mean())
        _validate(model, vx, vy, ctx)
    return 0.0


def dataloader_loop(data: TrainingData, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    dataset = TensorDataset(
        torch.from_numpy(data.train.x), torch.from_numpy(data.train.y.astype(np.float32))
    )
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, generator=generator)
    assert data.validation is not None
    vx = torch.from_numpy(data.validation.x).to(device)
    vy = torch.from_numpy(data.validation.y.astype(np.float32)).to(device)
    model = MLP(vx.shape[1], 1, hidden=HIDDEN, dropout=0.1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    ctx = lambda: _precision(device, args.precision)  # noqa: E731
    for _ in range(args.epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            with ctx():
                out = model(xb.to(device)).reshape(-1)
                loss = F.binary_cross_entropy_with_logits(out, yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        _validate(model, vx, vy, ctx)
    return 0.0


def mlform_trainer(data: TrainingData, args: argparse.Namespace) -> float:
    spec = {
        "framework": "torch",
        "task": "classification",
        "module": {"_target_": "mlform.torch.mlp.MLP", "hidden": list(HIDDEN), "dropout": 0.1},
        "trainer": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": {"_target_": "torch.optim.AdamW", "lr": LR},
            "loss": "bce",
            "device": args.device,
            "precision": args.precision,
            "seed": args.seed,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = train_torch(
            spec,
            data,
            progress=lambda _m, _f: None,
            checkpoint_dir=Path(tmp) / "ckpt",
            gpu_requested=args.device == "cuda",
            address="model.bench",
        )
    return float(model.epochs[-1].metrics["val_loss"])


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument("--no-dataloader", action="store_true", help="skip the slow baseline")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = make_data(args.rows, args.seed)
    runs: dict[str, Callable[[TrainingData, argparse.Namespace], float]] = {
        "mlform trainer": mlform_trainer,
        "plain loop": plain_loop,
    }
    if not args.no_dataloader:
        runs["dataloader loop"] = dataloader_loop
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: imports, allocator, thread pools
        warm = argparse.Namespace(**{**vars(args), "epochs": 1})
        run(make_data(2_000, args.seed), warm)
    for repeat in range(args.repeats):
        names = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in names:
            _sync(args.device)
            began = time.perf_counter()
            runs[name](data, args)
            _sync(args.device)
            times[name].append(time.perf_counter() - began)

    samples = data.train.x.shape[0] * args.epochs
    print(
        f"device={args.device} precision={args.precision} rows={data.train.x.shape[0]} "
        f"epochs={args.epochs} batch={args.batch_size} repeats={args.repeats} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    baseline = statistics.median(times["plain loop"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:16s} median {median:7.3f} s  {samples / median:10.0f} samples/s  "
            f"x{median / baseline:.3f} of plain loop  (runs: "
            + ", ".join(f"{v:.3f}" for v in values)
            + ")"
        )
    overhead = statistics.median(times["mlform trainer"]) / baseline - 1
    print(f"trainer overhead vs plain loop: {overhead * 100:+.1f} % (target <= 5 %)")


if __name__ == "__main__":
    main()

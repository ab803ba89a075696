"""The error boundary around user code (after Dagster's ``user_code_error_boundary``).

Inside ``with user_code("training", "model.churn"):`` an exception raised by user code (a
``_target_`` module or factory, a module's ``forward``) becomes a
:class:`~mlform.providers.base.StepFailed` whose diagnostic names the model and the step and
points at the innermost frame of the user's own code: not mlform, not an installed library
(torch, scikit-learn, Hydra, ...), not the standard library. A bad ``_target_`` block
(:class:`~mlform.config.instantiate.TargetError`) becomes a config diagnostic on ``key``.
:class:`StepFailed` and other deliberate mlform errors pass through unchanged, and so do
``KeyboardInterrupt`` and ``SystemExit``.
"""

from __future__ import annotations

import sysconfig
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlform.config.instantiate import TargetError
from mlform.diagnostics import Diagnostic
from mlform.errors import MlformError
from mlform.providers.base import StepFailed

__all__ = ["user_code", "user_frame"]

_MLFORM_DIR = Path(__file__).resolve().parents[1]


def _library_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({Path(paths[n]).resolve() for n in names if paths.get(n)})


_LIBRARY_DIRS = (_MLFORM_DIR, *_library_dirs())


@contextmanager
def user_code(step: str, address: str, *, key: str | None = None) -> Iterator[None]:
    """Turn exceptions from user code run inside the block into ``StepFailed``."""
    try:
        yield
    except TargetError as error:
        raise StepFailed(
            Diagnostic.error(
                f"{address}: {step} failed: {error}",
                "Check the _target_ path (a module importable from the project root, "
                "then the class or function) and that every other key is an argument it "
                "accepts.",
                key=key,
                address=address,
            )
        ) from error
    except (StepFailed, MlformError):
        raise
    except Exception as error:
        raise StepFailed(_diagnostic(step, address, key, error)) from error


def _diagnostic(step: str, address: str, key: str | None, error: Exception) -> Diagnostic:
    root = _innermost_cause(error)
    what = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
    frame = user_frame(root)
    if frame is not None:
        where = f"It was raised in your code at {frame.filename}:{frame.lineno} in {frame.name}"
        where += f": {frame.line}" if frame.line else ""
        todo = (
            f"Fix {Path(frame.filename).name}:{frame.lineno} (reproduce it by calling your "
            "code on a small batch in a Python shell), then run mlform apply again."
        )
        return Diagnostic.error(
            f"{address}: {step} failed in user code: {what}",
            f"{where}.\n{todo}",
            key=key,
            file=frame.filename,
            line=frame.lineno,
            address=address,
        )
    frames = _frames(root)
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return Diagnostic.error(
        f"{address}: {step} failed: {what}",
        f"No frame of your own code is on the stack; the error was raised{at}. Check the "
        "arguments in the model's _target_ block and the input data it receives.",
        key=key,
        address=address,
    )


def user_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost traceback frame of ``error`` that lies in the user's own code."""
    for frame in reversed(_frames(error)):
        if _is_user_file(frame.filename):
            return frame
    return None


def _frames(error: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(error.__traceback__))


def _innermost_cause(error: BaseException) -> BaseException:
    """Unwrap Hydra's InstantiationException to the exception the target raised."""
    while error.__cause__ is not None and type(error).__module__.startswith("hydra."):
        error = error.__cause__
    return error


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(base) for base in _LIBRARY_DIRS)

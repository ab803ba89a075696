"""Where mlform finds its Jinja2 templates.

A project may override any template by putting a file of the same name in its own
``templates/`` directory; otherwise the templates that ship with mlform are used
(installed as ``mlform/_templates``, or the repository's ``templates/`` in a checkout).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlform


def template_dirs(project_dir: Path | None = None, extra: Sequence[Path] = ()) -> list[Path]:
    """Template search path: extra dirs, the project's templates/, then the built-in ones."""
    dirs = [Path(p) for p in extra]
    if project_dir is not None:
        dirs.append(project_dir / "templates")
    dirs.append(builtin_template_dir())
    return [d for d in dirs if d.is_dir()]


def builtin_template_dir() -> Path:
    package_dir = Path(mlform.__file__).resolve().parent
    installed = package_dir / "_templates"
    if installed.is_dir():
        return installed
    return package_dir.parents[1] / "templates"

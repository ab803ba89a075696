"""``mlform init``: scaffold a new project from the built-in ``init`` templates."""

from __future__ import annotations

import re
from pathlib import Path

from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError
from mlform.templates import builtin_template_dir

_NAME_RE = re.compile(r"^[a-z][a-z0-9\-]{0,62}$")


def scaffold_project(
    directory: Path, *, name: str | None = None, force: bool = False
) -> list[Path]:
    """Render templates/init/** into ``directory``; ``*.j2`` files are rendered with Jinja2."""
    from jinja2 import Environment, StrictUndefined

    project_name = name or directory.resolve().name.lower().replace("_", "-")
    if not _NAME_RE.match(project_name):
        raise ConfigError(
            [
                Diagnostic.error(
                    f"invalid project name {project_name!r}",
                    "Use lower-case letters, digits and '-', starting with a letter "
                    "(pass --name to choose one).",
                    key="project.name",
                )
            ]
        )
    source = builtin_template_dir() / "init"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    targets = [
        directory / p.relative_to(source).with_suffix("")
        if p.suffix == ".j2"
        else directory / p.relative_to(source)
        for p in files
    ]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"{directory} already has project files",
                    "These would be overwritten: "
                    + ", ".join(str(t.relative_to(directory)) for t in existing)
                    + ". Choose an empty directory or pass --force.",
                )
            ]
        )
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    written = []
    for src, dst in zip(files, targets, strict=True):
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text()
        if src.suffix == ".j2":
            text = env.from_string(text).render(project_name=project_name)
        dst.write_text(text)
        written.append(dst)
    return written

"""Config source files read with their line numbers (for provenance and YAML errors).

Hydra composes the values; this module reads the same YAML files once more with
``yaml.compose`` so that every key keeps the 1-based line it was written on. Parsed
files are cached by (path, modification time, size), so repeated composes are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One YAML source: its path relative to the project and its node tree."""

    file: str
    root: yaml.Node | None


_cache: dict[tuple[str, int, int], SourceFile] = {}


def read_source(path: Path, rel: str) -> SourceFile:
    """Parse ``path`` keeping line marks; ConfigError with file:line on a YAML syntax error."""
    try:
        stat = path.stat()
        cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(cache_key)
        if cached is not None and cached.file == rel:
            return cached
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"cannot read config file {rel}",
                    f"{exc}. Make sure the file exists, is readable and is UTF-8 text.",
                    file=rel,
                )
            ]
        ) from None
    problem = yaml_problem(text, rel)
    if problem is not None:
        raise ConfigError([problem])
    root = yaml.compose(text, Loader=_Loader)
    source = SourceFile(rel, root)
    if len(_cache) > 512:
        _cache.clear()
    _cache[cache_key] = source
    return source


def yaml_problem(text: str, rel: str) -> Diagnostic | None:
    """A diagnostic for malformed YAML in ``text`` (with the line), or None if it parses."""
    try:
        yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return Diagnostic.error(
            f"malformed YAML in {rel}" + (f" at line {line}" if line else ""),
            f"{what or 'the file is not valid YAML'}. Fix the YAML syntax "
            "(indentation, quoting, ':' after keys).",
            file=rel,
            line=line,
        )
    except yaml.YAMLError as exc:
        return Diagnostic.error(
            f"malformed YAML in {rel}", f"{exc}. Fix the YAML syntax.", file=rel
        )
    return None


def scan_yaml_problems(paths: list[tuple[Path, str]]) -> list[Diagnostic]:
    """Syntax diagnostics for every malformed file among ``paths`` (path, relative name)."""
    problems = []
    for path, rel in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        problem = yaml_problem(text, rel)
        if problem is not None:
            problems.append(problem)
    return problems

"""Consoles and diagnostic rendering shared by the CLI commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from mlform.diagnostics import Diagnostic

_color_disabled = False


def disable_color() -> None:
    global _color_disabled
    _color_disabled = True
    out.cache_clear()
    err.cache_clear()


def color_enabled() -> bool:
    return not _color_disabled and not os.environ.get("NO_COLOR")


@lru_cache(maxsize=1)
def out() -> Console:
    from rich.console import Console

    return Console(no_color=not color_enabled(), highlight=False, soft_wrap=False)


@lru_cache(maxsize=1)
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, no_color=not color_enabled(), highlight=False)


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    """Errors and warnings to stderr, one block each, Terraform style."""
    from rich.markup import escape

    console = err()
    for d in diagnostics:
        style = "bold red" if d.severity.value == "error" else "bold yellow"
        label = "Error" if d.severity.value == "error" else "Warning"
        console.print(f"[{style}]{label}:[/] [bold]{escape(d.summary)}[/]")
        where = []
        if d.address:
            where.append(f"object {d.address}")
        if d.key:
            where.append(f"key {d.key}")
        if d.location:
            where.append(f"in {d.location}")
        if where:
            console.print(f"  [dim]{escape(', '.join(where))}[/]")
        if d.detail:
            console.print(f"  {escape(d.detail)}")
        console.print()


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()

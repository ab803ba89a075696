"""Views of a :class:`~mlform.policy.model.PolicyReport`: text, json, sarif, junit, github.

Every renderer is a pure function of the report (and a few options) returning a string,
so the same report always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from mlform.policy.model import PolicyReport

__all__ = ["FORMATS", "Format", "render"]


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    JUNIT = "junit"
    GITHUB = "github"


def _text(report: PolicyReport, fail_on_warn: bool) -> str:
    from mlform.policy.render.text import render_text

    return render_text(report)


def _json(report: PolicyReport, fail_on_warn: bool) -> str:
    from mlform.policy.render.json import render_json

    return render_json(report)


def _sarif(report: PolicyReport, fail_on_warn: bool) -> str:
    from mlform.policy.render.sarif import render_sarif

    return render_sarif(report)


def _junit(report: PolicyReport, fail_on_warn: bool) -> str:
    from mlform.policy.render.junit import render_junit

    return render_junit(report, fail_on_warn=fail_on_warn)


def _github(report: PolicyReport, fail_on_warn: bool) -> str:
    from mlform.policy.render.github import render_github

    return render_github(report, fail_on_warn=fail_on_warn)


FORMATS: dict[Format, Callable[[PolicyReport, bool], str]] = {
    Format.TEXT: _text,
    Format.JSON: _json,
    Format.SARIF: _sarif,
    Format.JUNIT: _junit,
    Format.GITHUB: _github,
}


def render(report: PolicyReport, fmt: Format | str, *, fail_on_warn: bool = False) -> str:
    """``report`` as ``fmt``; ``fail_on_warn`` makes advisory findings fail (junit, github)."""
    return FORMATS[Format(fmt)](report, fail_on_warn)

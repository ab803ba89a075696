"""The model card of a registered version, rendered from ``templates/model_card.md.j2``.

The card joins what the model's ``card:`` config says (intended use, limitations,
ethical considerations, caveats, owners, references) with what mlform measured: the
training data, metrics, gates, fairness and hardware. A project can override the
template with its own ``templates/model_card.md.j2``.

Markdown is rendered with autoescape off; every value from config or data goes through
a filter: ``md`` (prose: no HTML), ``cell`` (table cells: no pipes or line breaks),
``code`` (inline code that survives backticks) or ``num`` (numbers, ``—`` for none).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mlform.registry.jsonio import jsonable
from mlform.templates import template_dirs

__all__ = ["TEMPLATE_NAME", "CardInputs", "render_card"]

TEMPLATE_NAME = "model_card.md.j2"


@dataclass(frozen=True, slots=True)
class CardInputs:
    ref: str  # model.churn@v3
    status: str
    task: str
    framework: str
    feature_set: str
    label: str
    feature_names: Sequence[str]
    rows: Mapping[str, int]  # split -> rows, e.g. {"train": 455, "test": 114}
    digest: str | None = None
    created_at: str = ""
    run_id: str | None = None
    card: Any = None  # mlform.spec.models.Card or the equivalent mapping
    description: str | None = None
    owner: str | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    gate_results: Sequence[Any] = ()  # GateResult or dicts
    fairness: Sequence[Any] = ()  # FairnessResult or dicts
    hardware: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    reasons: Sequence[str] = ()


def _md(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: Any) -> str:
    return _md(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(text: Any) -> str:
    value = str(text).replace("\n", " ")
    fence = "`"
    while fence in value:
        fence += "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool | int):
        return str(value)
    return f"{float(value):.4g}"


def _plain(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(jsonable(item))
    to_dict = getattr(item, "to_dict", None)
    return dict(jsonable(to_dict())) if callable(to_dict) else {}


def _card_config(card: Any) -> dict[str, Any]:
    if card is None:
        return {}
    if hasattr(card, "model_dump"):
        return dict(card.model_dump(mode="json"))
    return dict(card)


def _limitations(
    inputs: CardInputs, config: Mapping[str, Any], fairness: list[dict[str, Any]]
) -> list[str]:
    items = []
    if config.get("limitations"):
        items.append(str(config["limitations"]))
    total = sum(int(n) for n in inputs.rows.values())
    items.append(
        f"Evaluated on held-out data from the same source as the training data ({total} rows "
        "in all); performance on other populations is not measured."
    )
    for f in fairness:
        if f.get("small_groups"):
            items.append(
                f"Fairness for {f['column']}: groups {', '.join(f['small_groups'])} had too few "
                "rows to assess."
            )
    if not fairness:
        items.append("No fairness check was configured (no `fairness.sensitive` columns).")
    return items


def render_card(
    inputs: CardInputs,
    *,
    project_dir: Path | None = None,
    extra_template_dirs: Sequence[Path] = (),
) -> str:
    """The markdown model card; a project's ``templates/model_card.md.j2`` wins."""
    env = Environment(
        loader=FileSystemLoader([str(d) for d in template_dirs(project_dir, extra_template_dirs)]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML: values are escaped by the filters instead
        trim_blocks=False,
    )
    env.filters.update(md=_md, cell=_cell, code=_code, num=_num)
    config = _card_config(inputs.card)
    fairness = [_plain(f) for f in inputs.fairness]
    owners = list(config.get("owners") or ([] if inputs.owner is None else [inputs.owner]))
    text = env.get_template(TEMPLATE_NAME).render(
        ref=inputs.ref,
        status=inputs.status,
        task=inputs.task,
        framework=inputs.framework,
        digest=inputs.digest,
        created_at=inputs.created_at or "—",
        run_id=inputs.run_id,
        description=inputs.description,
        owners=owners,
        reasons=list(inputs.reasons),
        intended_use=config.get("intended_use"),
        feature_set=inputs.feature_set,
        label=inputs.label,
        feature_names=list(inputs.feature_names),
        rows=dict(inputs.rows),
        metrics=dict(inputs.metrics),
        gates=[_plain(g) for g in inputs.gate_results],
        fairness=fairness,
        hardware=dict(jsonable(inputs.hardware)),
        duration_s=inputs.duration_s,
        limitations=_limitations(inputs, config, fairness),
        ethical_considerations=config.get("ethical_considerations"),
        caveats=config.get("caveats"),
        references=list(config.get("references") or []),
    )
    return _tidy(text)


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"

"""Pack ``pii``: personal data is encrypted, kept for a limited time, and approved for use.

``pii.approval`` uses a documented heuristic to decide which PII columns a feature set
reads (see :func:`pii_columns_read`): without a ``query`` it reads its sources whole; with
one, it reads a PII column when the column's name appears in the query as a word, or when
the query selects ``*`` from that source (``SELECT *``, ``p.*`` where ``p`` names or
aliases the source). A column the feature set drops with a ``drop`` transform, or that
the model lists in ``exclude_columns``, does not feed the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from mlform.policy.model import Level, PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation
from mlform.policy.packs.spec_reading import dig, pii_columns

ENCRYPTION = RuleInfo(
    id="pii.encryption",
    pack="pii",
    title="PII data is encrypted at rest",
    description="A data source with a column marked `pii: true` must declare "
    "`encryption: {at_rest: true}`.",
    help="Add `encryption: {at_rest: true, key: kms://…}` to the data source, or remove the "
    "`pii` flag if the column holds no personal data.",
    default_level=Level.MANDATORY,
)
RETENTION = RuleInfo(
    id="pii.retention",
    pack="pii",
    title="PII data has a retention limit",
    description="A data source with a column marked `pii: true` must declare `retention_days`.",
    help="Set `retention_days` on the data source to how long personal data may be kept.",
    default_level=Level.MANDATORY,
)
APPROVAL = RuleInfo(
    id="pii.approval",
    pack="pii",
    title="PII reaches a model only with an approval",
    description="A model whose feature set reads a PII column (named in its query, selected "
    "with `*`, or read whole when the feature set has no query) must carry an approval "
    "naming that column.",
    help="Stop reading the column (leave it out of the query, `drop` it or list it in the "
    "model's `exclude_columns`), or add `approvals: [{by, reason, columns: [COLUMN]}]` to "
    "the model.",
    default_level=Level.MANDATORY,
)

_SOURCE_REF = re.compile(
    r"\b(?:from|join)\s+([A-Za-z_]\w*)(?:\s+(?:as\s+)?([A-Za-z_]\w*))?", re.IGNORECASE
)
_WILDCARD = re.compile(r"(?:\b([A-Za-z_]\w*)\s*\.\s*)?\*")
_NOT_ALIASES = {
    "on",
    "using",
    "where",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "full",
    "cross",
    "natural",
    "group",
    "order",
    "limit",
    "union",
    "as",
    "select",
}


def pii_columns_read(query: str | None, source: str, columns: list[str]) -> list[str]:
    """Which of ``source``'s PII ``columns`` a feature-set query reads (all without a query)."""
    if not query:
        return list(columns)
    names = {source.lower()}
    for match in _SOURCE_REF.finditer(query):
        alias = match.group(2)
        if match.group(1).lower() == source.lower() and alias and alias.lower() not in _NOT_ALIASES:
            names.add(alias.lower())
    for match in _WILDCARD.finditer(query):
        before = query[: match.start()].rstrip()
        if before.endswith("("):  # count(*)
            continue
        qualifier = match.group(1)
        if qualifier is None or qualifier.lower() in names:
            return list(columns)
    return [c for c in columns if re.search(rf"\b{re.escape(c)}\b", query, re.IGNORECASE)]


def _first_pii_key(name: str, source: Mapping[str, Any]) -> str:
    return f"data.{name}.schema.columns.{pii_columns(source)[0]}.pii"


def check_encryption(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    for name, source in ctx.section("data"):
        columns = pii_columns(source)
        if not columns or dig(source, "encryption", "at_rest") is True:
            continue
        explicit_off = dig(source, "encryption", "at_rest") is False
        key = f"data.{name}.encryption.at_rest" if explicit_off else _first_pii_key(name, source)
        yield Violation(
            ENCRYPTION.id,
            f"data.{name} holds PII ({', '.join(columns)}) but is not encrypted at rest",
            address=f"data.{name}",
            key=key,
        )


def check_retention(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    for name, source in ctx.section("data"):
        columns = pii_columns(source)
        if columns and not source.get("retention_days"):
            yield Violation(
                RETENTION.id,
                f"data.{name} holds PII ({', '.join(columns)}) but sets no retention_days",
                address=f"data.{name}",
                key=_first_pii_key(name, source),
            )


def _features_pii(
    feature: Mapping[str, Any], sources: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """``(source, column)`` for every PII column a feature set reads and keeps."""
    dropped = {
        col
        for op in feature.get("transforms") or ()
        if isinstance(op, Mapping) and op.get("op") == "drop"
        for col in op.get("columns") or ()
    }
    for source_name in feature.get("sources") or ():
        source = sources.get(source_name)
        if not isinstance(source, Mapping):
            continue
        for column in pii_columns_read(feature.get("query"), source_name, pii_columns(source)):
            if column not in dropped:
                yield source_name, column


def _approved(model: Mapping[str, Any]) -> set[str]:
    return {
        str(column)
        for approval in model.get("approvals") or ()
        if isinstance(approval, Mapping)
        for column in approval.get("columns") or ()
    }


def check_approval(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    sources = inp.spec.get("data") or {}
    features = inp.spec.get("features") or {}
    for name, model in ctx.section("models"):
        feature = features.get(model.get("features"))
        if not isinstance(feature, Mapping):
            continue
        approved = _approved(model)
        excluded = set(model.get("exclude_columns") or ())
        for source, column in _features_pii(feature, sources):
            if column in excluded or column in approved or f"{source}.{column}" in approved:
                continue
            yield Violation(
                APPROVAL.id,
                f"model.{name} is fed PII column {source}.{column} through "
                f"features.{model.get('features')} without an approval naming it",
                address=f"model.{name}",
                key=f"models.{name}.approvals"
                if model.get("approvals")
                else (f"models.{name}.features"),
            )


PACK = RulePack(
    "pii",
    ((ENCRYPTION, check_encryption), (RETENTION, check_retention), (APPROVAL, check_approval)),
)

"""Reading and writing the state document as canonical JSON text.

The rendering is deterministic (objects sorted by address, two-space indent, a final
newline), so that reading a document and writing it back is byte-identical; golden
files in tests/golden/state/ pin it. It is orjson's (the same text as the standard
library's ``json.dumps(indent=2, ensure_ascii=False)`` but for the spelling of floats
with small exponents: ``0.00001``, not ``1e-05``; the same value either way), ~30x
faster: an apply commits the state at every step's start and end, and with 50
deployments the standard encoder's pure-Python indenting was seconds of each apply.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import ValidationError

from mlform.errors import StateError
from mlform.state.migrate import migrate_document
from mlform.state.model import StateDocument


def render_state(doc: StateDocument) -> str:
    """The canonical JSON text of ``doc``."""
    data = doc.model_dump(mode="json")
    data["objects"] = {key: data["objects"][key] for key in sorted(data["objects"])}
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"


def parse_state(text: str, *, source: str, recovery: str = "") -> StateDocument:
    """Parse, migrate and validate a state document; ``source`` names it in errors.

    ``recovery`` is appended to every error message (what the user can do about it).
    """
    hint = f": {recovery}" if recovery else ""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){hint}"
        ) from None
    if not isinstance(raw, dict):
        raise StateError(f"{source} is not a state document (expected a JSON object){hint}")
    try:
        migrated = migrate_document(raw)
    except StateError as exc:
        raise StateError(f"{source}: {exc}{hint}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(
            f"{source} could not be migrated ({type(exc).__name__}: {exc}){hint}"
        ) from None
    try:
        return StateDocument.model_validate(migrated)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise StateError(f"{source} is not a valid state document ({problems}){hint}") from None

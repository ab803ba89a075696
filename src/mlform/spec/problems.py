"""Pydantic validation errors turned into diagnostics that name the key, file and fix."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

from mlform.addresses import Kind
from mlform.diagnostics import Diagnostic
from mlform.spec import schema_walk
from mlform.spec.system import SystemSpec

Origin = tuple[str, int | None]

NAME_RULE = (
    "Names use letters, digits, '_' or '-' (at most 63 characters, starting with a letter "
    "or digit)."
)


def hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def where(key: str, provenance: Mapping[str, Origin]) -> dict[str, Any]:
    """``key``, ``file``, ``line`` and ``address`` keyword arguments for a Diagnostic."""
    out: dict[str, Any] = {"key": key or None}
    path = key
    while path:
        origin = provenance.get(path)
        if origin is not None:
            out["file"], out["line"] = origin
            break
        path = path.rpartition(".")[0]
    parts = key.split(".")
    if len(parts) >= 2:
        with contextlib.suppress(ValueError):
            out["address"] = f"{Kind.from_section(parts[0]).value}.{parts[1]}"
    return out


def real_path(loc: Sequence[str | int], data: Any) -> tuple[list[str | int], bool]:
    """The config path of an error location, without union tags; and whether it is a key."""
    parts: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if part == "[key]":
            return parts, True
        found, child = _step(node, part)
        if found:
            parts.append(part)
            node = child
        elif last and isinstance(node, dict) and isinstance(part, str) and "[" not in part:
            parts.append(part)  # a missing or extra key
    return parts, False


def _step(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def spec_diagnostics(
    errors: Sequence[ErrorDetails], data: Mapping[str, Any], provenance: Mapping[str, Origin]
) -> list[Diagnostic]:
    """One diagnostic per problem key (union members' errors on one key are merged)."""
    grouped: dict[tuple[str, bool], list[ErrorDetails]] = {}
    paths: dict[tuple[str, bool], list[str | int]] = {}
    for error in errors:
        parts, is_key = real_path(error["loc"], data)
        key = ".".join(str(p) for p in parts)
        grouped.setdefault((key, is_key), []).append(error)
        paths[(key, is_key)] = parts
    out: list[Diagnostic] = []
    for (key, is_key), group in grouped.items():
        out.append(_diagnostic(key, paths[(key, is_key)], is_key, group, data, provenance))
    return out


def _diagnostic(
    key: str,
    parts: list[str | int],
    is_key: bool,
    group: list[ErrorDetails],
    data: Mapping[str, Any],
    provenance: Mapping[str, Origin],
) -> Diagnostic:
    loc = where(key, provenance)
    leaf = str(parts[-1]) if parts else ""
    parent = ".".join(str(p) for p in parts[:-1])
    if is_key:
        return Diagnostic.error(
            f"invalid name {leaf!r} in {parent or 'the config'}", NAME_RULE, **loc
        )
    error = group[0]
    kind = error["type"]
    given = error.get("input")
    ctx = error.get("ctx") or {}
    parent_type = schema_walk.type_at(SystemSpec, parts[:-1], data) if parts else SystemSpec
    parent_node = _node(data, parts[:-1])
    if kind == "extra_forbidden":
        valid = schema_walk.keys_of(parent_type, parent_node)
        listing = f" Valid keys: {', '.join(valid)}." if valid else ""
        return Diagnostic.error(
            f"unknown key {key}",
            f"{parent or 'The top level'} has no key {leaf!r}.{hint(leaf, valid)}{listing}",
            **loc,
        )
    if kind == "missing":
        return Diagnostic.error(
            f"missing required key {key}",
            f"Add {leaf!r} under {parent or 'the top level'}."
            + _required_listing(parent_type, parent_node),
            **loc,
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "")).strip("'")
        tags = schema_walk.tags_of(schema_walk.type_at(SystemSpec, parts, data), disc)
        disc_key = f"{key}.{disc}" if key else disc
        loc = where(disc_key, provenance)
        if kind == "union_tag_not_found":
            return Diagnostic.error(
                f"missing required key {disc_key}",
                f"Add {disc}: one of {', '.join(tags)}.",
                **loc,
            )
        tag = str(ctx.get("tag", ""))
        return Diagnostic.error(
            f"invalid {disc} {tag!r} for {key}",
            f"{disc} must be one of {', '.join(tags)}.{hint(tag, tags)}",
            **loc,
        )
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return Diagnostic.error(
            f"invalid value {short(given)} for {key}",
            f"Allowed values: {', '.join(choices)}.{hint(str(given), choices)}",
            **loc,
        )
    if kind == "string_pattern_mismatch" and "A-Za-z0-9_" in str(ctx.get("pattern", "")):
        return Diagnostic.error(f"invalid name {short(given)} for {key}", NAME_RULE, **loc)
    messages = []
    for item in group:
        message = item["msg"].removeprefix("Value error, ")
        if message not in messages:
            messages.append(message)
    summary = "invalid value" if kind in ("value_error", "assertion_error") else "wrong value"
    return Diagnostic.error(
        f"{summary} for {key or 'the config'}",
        f"{'; or '.join(messages)} (given: {short(given)}).",
        **loc,
    )


def _required_listing(tp: Any, node: Any) -> str:
    required = schema_walk.required_keys_of(tp, node)
    return f" Required keys there: {', '.join(required)}." if required else ""


def _node(data: Any, parts: Sequence[str | int]) -> Any:
    node = data
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node

"""Provenance: which file and line last set each config key.

Sources are replayed in Hydra's composition order with OmegaConf's merge rules:
mappings merge key by key, while scalars, lists and nulls replace the whole subtree.
Keys are dotted paths (list items by index: ``...steps.0.weight``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from mlform.config.source import SourceFile

Origin = tuple[str, int | None]
Provenance = dict[str, Origin]

COMMAND_LINE = "<command line>"


def join_key(prefix: str, part: object) -> str:
    return f"{prefix}.{part}" if prefix else str(part)


def replay_source(provenance: Provenance, source: SourceFile, package: str) -> None:
    """Record every key ``source`` sets when merged at ``package`` (``""`` = root)."""
    root = source.root
    if not isinstance(root, yaml.MappingNode):
        return
    first_line = root.start_mark.line + 1
    prefix = ""
    for part in package.split(".") if package else []:
        prefix = join_key(prefix, part)
        provenance[prefix] = (source.file, first_line)
    for key_node, value_node in root.value:
        if key_node.value == "defaults":  # Hydra's defaults list is not config data
            continue
        _replay_pair(provenance, source.file, prefix, key_node, value_node)


def _replay_pair(
    provenance: Provenance, file: str, prefix: str, key_node: yaml.Node, value_node: yaml.Node
) -> None:
    path = join_key(prefix, key_node.value)
    provenance[path] = (file, key_node.start_mark.line + 1)
    if isinstance(value_node, yaml.MappingNode):
        for child_key, child_value in value_node.value:
            _replay_pair(provenance, file, path, child_key, child_value)
        return
    drop_descendants(provenance, path)
    if isinstance(value_node, yaml.SequenceNode):
        _replay_items(provenance, file, path, value_node)


def _replay_items(provenance: Provenance, file: str, path: str, node: yaml.SequenceNode) -> None:
    for index, item in enumerate(node.value):
        item_path = join_key(path, index)
        provenance[item_path] = (file, item.start_mark.line + 1)
        if isinstance(item, yaml.MappingNode):
            for child_key, child_value in item.value:
                _replay_pair(provenance, file, item_path, child_key, child_value)
        elif isinstance(item, yaml.SequenceNode):
            _replay_items(provenance, file, item_path, item)


def drop_descendants(provenance: Provenance, path: str) -> None:
    prefix = path + "."
    for key in [k for k in provenance if k.startswith(prefix)]:
        del provenance[key]


def replay_override(
    provenance: Provenance, key: str, *, delete: bool, structure: Mapping[str, Any]
) -> None:
    """Record a command-line override of ``key`` (and everything now under it)."""
    drop_descendants(provenance, key)
    if delete:
        provenance.pop(key, None)
        return
    provenance[key] = (COMMAND_LINE, None)
    value = lookup_value(structure, key)
    for path in iter_paths(value, key):
        provenance[path] = (COMMAND_LINE, None)


def lookup_value(structure: Any, key: str) -> Any:
    node = structure
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Sequence) and not isinstance(node, str) and part.isdigit():
            index = int(part)
            if index >= len(node):
                return None
            node = node[index]
        else:
            return None
    return node


def iter_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every key path inside ``value`` (mapping keys and list indices), depth first."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            path = join_key(prefix, key)
            yield path
            yield from iter_paths(child, path)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            path = join_key(prefix, index)
            yield path
            yield from iter_paths(child, path)


def nearest_origin(provenance: Mapping[str, Origin], key: str) -> Origin | None:
    """The origin of ``key`` or of its closest ancestor that has one."""
    path = key
    while path:
        origin = provenance.get(path)
        if origin is not None:
            return origin
        path = path.rpartition(".")[0]
    return None


def restrict(provenance: Provenance, structure: Mapping[str, Any], fallback: Origin) -> Provenance:
    """Provenance for exactly the keys present in ``structure`` (gaps take the ancestor's)."""
    result: Provenance = {}
    for path in iter_paths(structure):
        origin = provenance.get(path)
        if origin is None:
            parent = path.rpartition(".")[0]
            origin = result.get(parent) if parent else None
        result[path] = origin or fallback
    return result

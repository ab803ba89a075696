"""The dependency graph over object addresses: order, cycles, dependents, and drawings.

Edges point from an object to what it depends on (``features.diagnosis`` depends on
``data.tumors``). Every walk is iterative, so a 10,000-object graph neither recurses
nor slows down; ties are always broken by :meth:`Address.sort_key`, so every result is
deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mlform.addresses import Address, Kind
from mlform.desired.model import DesiredSystem

__all__ = [
    "DependencyGraph",
    "GraphCycleError",
    "format_cycle",
    "render_dot",
    "render_mermaid",
]


class GraphCycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists it, first address repeated at the end."""

    def __init__(self, cycle: list[Address]) -> None:
        super().__init__(f"dependency cycle: {format_cycle(cycle)}")
        self.cycle = cycle


def format_cycle(cycle: Iterable[Address]) -> str:
    """``features.a -> features.b -> features.a``."""
    return " -> ".join(str(a) for a in cycle)


@dataclass(frozen=True)
class DependencyGraph:
    """Nodes and their dependencies; dependencies outside the node set are kept apart."""

    dependencies: Mapping[Address, tuple[Address, ...]]
    _dependents: dict[Address, tuple[Address, ...]] = field(repr=False, compare=False)

    @classmethod
    def from_edges(cls, edges: Mapping[Address, Iterable[Address]]) -> DependencyGraph:
        """A graph from ``address -> its dependencies``; each list is deduplicated and sorted."""
        deps = {a: tuple(sorted(set(d), key=Address.sort_key)) for a, d in edges.items()}
        dependents: dict[Address, list[Address]] = {a: [] for a in deps}
        for node in sorted(deps, key=Address.sort_key):
            for dep in deps[node]:
                if dep in dependents:
                    dependents[dep].append(node)
        return cls(deps, {a: tuple(d) for a, d in dependents.items()})

    @classmethod
    def from_desired(cls, desired: DesiredSystem) -> DependencyGraph:
        return cls.from_edges({obj.address: obj.depends_on for obj in desired})

    @property
    def nodes(self) -> list[Address]:
        """Every node, sorted by address."""
        return sorted(self.dependencies, key=Address.sort_key)

    def __len__(self) -> int:
        return len(self.dependencies)

    def __contains__(self, address: object) -> bool:
        return address in self.dependencies

    def dependents(self, address: Address) -> tuple[Address, ...]:
        """The nodes that depend directly on ``address``, sorted."""
        return self._dependents.get(address, ())

    def all_dependents(self, address: Address) -> list[Address]:
        """Every node that depends on ``address`` directly or transitively, in topological order."""
        seen: set[Address] = set()
        stack = list(self.dependents(address))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.dependents(node))
        return [a for a in self.topological_order() if a in seen]

    def missing(self) -> list[tuple[Address, Address]]:
        """``(node, dependency)`` pairs whose dependency is not a node of the graph."""
        return [
            (node, dep)
            for node in self.nodes
            for dep in self.dependencies[node]
            if dep not in self.dependencies
        ]

    def topological_order(self) -> list[Address]:
        """Dependencies first, ties by address; raises GraphCycleError on a cycle."""
        remaining = {
            a: sum(1 for d in deps if d in self.dependencies)
            for a, deps in self.dependencies.items()
        }
        ready = [(a.sort_key(), a) for a, n in remaining.items() if n == 0]
        heapq.heapify(ready)
        order: list[Address] = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for dependent in self._dependents[node]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    heapq.heappush(ready, (dependent.sort_key(), dependent))
        if len(order) != len(self.dependencies):
            cycle = self.find_cycle()
            assert cycle is not None  # Kahn's algorithm stalls only on a cycle
            raise GraphCycleError(cycle)
        return order

    def find_cycle(self) -> list[Address] | None:
        """A cycle as ``[a, b, …, a]`` starting at its smallest address, or None."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self.dependencies, white)
        for start in self.nodes:
            if colour[start] != white:
                continue
            path: list[Address] = [start]
            iterators = [iter(self.dependencies[start])]
            colour[start] = grey
            while iterators:
                dep = next(iterators[-1], None)
                if dep is None:
                    colour[path.pop()] = black
                    iterators.pop()
                elif dep not in colour or colour[dep] == black:
                    continue
                elif colour[dep] == grey:
                    return _rotate(path[path.index(dep) :])
                else:
                    colour[dep] = grey
                    path.append(dep)
                    iterators.append(iter(self.dependencies[dep]))
        return None


def _rotate(loop: list[Address]) -> list[Address]:
    """The loop (which follows dependency edges) started at its smallest address, closed."""
    smallest = min(range(len(loop)), key=lambda i: loop[i].sort_key())
    rotated = loop[smallest:] + loop[:smallest]
    return [*rotated, rotated[0]]


# -- drawings ---------------------------------------------------------------------------

_MERMAID_SHAPES: dict[Kind, tuple[str, str]] = {
    Kind.DATA: ("[(", ")]"),
    Kind.FEATURES: ("[/", "/]"),
    Kind.MODEL: ("[[", "]]"),
    Kind.DEPLOYMENT: ("([", "])"),
    Kind.MONITOR: ("{{", "}}"),
}
_DOT_SHAPES: dict[Kind, str] = {
    Kind.DATA: "cylinder",
    Kind.FEATURES: "parallelogram",
    Kind.MODEL: "box3d",
    Kind.DEPLOYMENT: "component",
    Kind.MONITOR: "hexagon",
}
_KIND_COLOURS: dict[Kind, str] = {
    Kind.DATA: "#e3f2fd",
    Kind.FEATURES: "#ede7f6",
    Kind.MODEL: "#fff8e1",
    Kind.DEPLOYMENT: "#e8f5e9",
    Kind.MONITOR: "#fce4ec",
}
_ACTION_COLOURS: dict[str, str] = {
    "create": "#c8e6c9",
    "update": "#fff59d",
    "replace": "#ffab91",
    "delete": "#ef9a9a",
    "retrain": "#ffe082",
    "rollout": "#b3e5fc",
    "no-op": "#eeeeee",
}


def render_mermaid(
    graph: DependencyGraph, *, actions: Mapping[str, str] | None = None, direction: str = "TD"
) -> str:
    """Mermaid flowchart text: shapes by kind, fill by planned action when ``actions`` is given.

    ``actions`` maps an address string to an action value (``"retrain"``); ``direction``
    is ``TD`` (top-down) or ``LR`` (left to right).
    """
    if direction not in ("TD", "LR"):
        raise ValueError(f"unknown direction {direction!r}: use TD or LR")
    actions = actions or {}
    order = _drawing_order(graph)
    lines = [f"graph {direction}"]
    for node in order:
        left, right = _MERMAID_SHAPES[node.kind]
        label = str(node)
        if str(node) in actions:
            label += f" ({actions[str(node)]})"
        lines.append(f'  {_mermaid_id(node)}{left}"{label}"{right}')
    for node in order:
        for dep in graph.dependencies[node]:
            lines.append(f"  {_mermaid_id(dep)} --> {_mermaid_id(node)}")
    if actions:
        for action, colour in _ACTION_COLOURS.items():
            lines.append(f"  classDef {_class(action)} fill:{colour},stroke:#555")
        for node in order:
            if str(node) in actions:
                lines.append(f"  class {_mermaid_id(node)} {_class(actions[str(node)])}")
    else:
        for kind, colour in _KIND_COLOURS.items():
            lines.append(f"  classDef {kind.value} fill:{colour},stroke:#555")
        for node in order:
            lines.append(f"  class {_mermaid_id(node)} {node.kind.value}")
    return "\n".join(lines) + "\n"


def render_dot(
    graph: DependencyGraph, *, actions: Mapping[str, str] | None = None, direction: str = "TD"
) -> str:
    """Graphviz DOT text, same conventions as :func:`render_mermaid`."""
    if direction not in ("TD", "LR"):
        raise ValueError(f"unknown direction {direction!r}: use TD or LR")
    actions = actions or {}
    order = _drawing_order(graph)
    rankdir = "TB" if direction == "TD" else "LR"
    lines = [
        "digraph mlform {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", style=filled];',
    ]
    for node in order:
        action = actions.get(str(node))
        label = str(node) if action is None else f"{node}\\n({action})"
        colour = _KIND_COLOURS[node.kind] if action is None else _ACTION_COLOURS.get(action, "#fff")
        lines.append(
            f'  "{node}" [label="{label}", shape={_DOT_SHAPES[node.kind]}, fillcolor="{colour}"];'
        )
    for node in order:
        for dep in graph.dependencies[node]:
            lines.append(f'  "{dep}" -> "{node}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _drawing_order(graph: DependencyGraph) -> list[Address]:
    try:
        return graph.topological_order()
    except GraphCycleError:
        return graph.nodes


def _mermaid_id(address: Address) -> str:
    """A Mermaid-safe, collision-free node id: ``_`` doubles, ``-`` becomes ``_h``."""
    name = address.name.replace("_", "__").replace("-", "_h")
    return f"{address.kind.value}_{name}"


def _class(action: str) -> str:
    return "act_" + action.replace("-", "")

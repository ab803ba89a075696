"""The dependency graph: order, cycles, dependents and drawings."""

from __future__ import annotations

import sys

import pytest

from mlform.addresses import Address
from mlform.desired.graph import (
    DependencyGraph,
    GraphCycleError,
    format_cycle,
    render_dot,
    render_mermaid,
)


def a(text: str) -> Address:
    return Address.parse(text)


def graph(edges: dict[str, list[str]]) -> DependencyGraph:
    return DependencyGraph.from_edges({a(k): [a(d) for d in v] for k, v in edges.items()})


EXAMPLE = {
    "monitor.drift": ["deployment.api"],
    "deployment.api": ["model.m"],
    "model.m": ["features.f"],
    "model.b": ["features.f"],
    "features.f": ["data.z", "data.a"],
    "data.z": [],
    "data.a": [],
}


def test_topological_order_puts_dependencies_first_and_breaks_ties_by_address() -> None:
    order = [str(x) for x in graph(EXAMPLE).topological_order()]
    assert order == [
        "data.a",
        "data.z",
        "features.f",
        "model.b",
        "model.m",
        "deployment.api",
        "monitor.drift",
    ]


def test_dependents_and_all_dependents() -> None:
    g = graph(EXAMPLE)
    assert [str(x) for x in g.dependents(a("features.f"))] == ["model.b", "model.m"]
    assert [str(x) for x in g.all_dependents(a("data.a"))] == [
        "features.f",
        "model.b",
        "model.m",
        "deployment.api",
        "monitor.drift",
    ]
    assert g.all_dependents(a("monitor.drift")) == []


def test_cycle_is_reported_from_its_smallest_address() -> None:
    g = graph({"features.b": ["features.a"], "features.a": ["features.b"], "data.x": []})
    cycle = g.find_cycle()
    assert cycle is not None
    assert format_cycle(cycle) == "features.a -> features.b -> features.a"
    with pytest.raises(GraphCycleError) as caught:
        g.topological_order()
    assert format_cycle(caught.value.cycle) == "features.a -> features.b -> features.a"


def test_self_loop_and_longer_cycle() -> None:
    assert format_cycle(graph({"model.m": ["model.m"]}).find_cycle() or []) == (
        "model.m -> model.m"
    )
    g = graph({"model.c": ["model.a"], "model.a": ["model.b"], "model.b": ["model.c"]})
    assert format_cycle(g.find_cycle() or []) == "model.a -> model.b -> model.c -> model.a"


def test_acyclic_graph_has_no_cycle_and_missing_dependencies_are_listed() -> None:
    g = graph({"model.m": ["features.gone"]})
    assert g.find_cycle() is None
    assert g.missing() == [(a("model.m"), a("features.gone"))]
    assert g.topological_order() == [a("model.m")]


def test_ten_thousand_node_chain_is_ordered_without_recursion() -> None:
    edges = {a(f"features.f{i}"): [a(f"features.f{i - 1}")] if i else [] for i in range(10_000)}
    g = DependencyGraph.from_edges(edges)
    # A recursive walk would need a frame per node: a limit far below 10,000 proves there
    # is none (speed is benchmarks/plan_scale.py's business, not a test's).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        order = g.topological_order()
        assert g.find_cycle() is None
        dependents = g.all_dependents(a("features.f0"))
    finally:
        sys.setrecursionlimit(limit)
    assert order[0] == a("features.f0") and order[-1] == a("features.f9999")
    assert len(dependents) == 9_999


def test_long_cycle_is_found_iteratively() -> None:
    n = 5_000
    edges = {a(f"model.m{i}"): [a(f"model.m{(i + 1) % n}")] for i in range(n)}
    cycle = DependencyGraph.from_edges(edges).find_cycle()
    assert cycle is not None and len(cycle) == n + 1 and cycle[0] == cycle[-1]


def test_mermaid_shapes_by_kind_and_colours_by_action() -> None:
    g = graph({"data.a": [], "deployment.diagnosis-api": ["data.a"], "model.x_y": ["data.a"]})
    text = render_mermaid(g)
    assert text.startswith("graph TD\n")
    assert '  data_a[("data.a")]' in text
    assert '  deployment_diagnosis_hapi(["deployment.diagnosis-api"])' in text
    assert '  model_x__y[["model.x_y"]]' in text
    assert "  data_a --> deployment_diagnosis_hapi" in text
    assert "  class data_a data" in text
    coloured = render_mermaid(g, actions={"model.x_y": "retrain"}, direction="LR")
    assert coloured.startswith("graph LR\n")
    assert '  model_x__y[["model.x_y (retrain)"]]' in coloured
    assert "  class model_x__y act_retrain" in coloured
    with pytest.raises(ValueError):
        render_mermaid(g, direction="BT")


def test_dot_output() -> None:
    g = graph({"data.a": [], "features.f": ["data.a"]})
    text = render_dot(g, actions={"features.f": "update"})
    assert text.startswith("digraph mlform {\n  rankdir=TB;")
    assert '"data.a" [label="data.a", shape=cylinder' in text
    assert '"features.f" [label="features.f\\n(update)", shape=parallelogram' in text
    assert 'fillcolor="#fff59d"' in text
    assert '  "data.a" -> "features.f";' in text
    assert "rankdir=LR;" in render_dot(g, direction="LR")

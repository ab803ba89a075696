"""The router's route table: validation, JSON round trip and upstream selection."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from mlform.serving.routes import (
    Mirror,
    RouteError,
    RouteTable,
    Upstream,
    is_preview,
    version_from_path,
)


def table_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "generation": 5,
        "upstreams": {
            "v1": {"url": "http://127.0.0.1:41001", "version": "1"},
            "v2": {"url": "http://127.0.0.1:41002", "version": "2"},
            "v3": {"url": "http://127.0.0.1:41003", "version": "3"},
        },
        "split": {"v1": 90, "v2": 10},
        "route_by": "weight",
        "key": None,
        "mirror": {"upstream": "v3", "percent": 20},
        "preview": "v2",
    }
    base.update(overrides)
    return base


def make(**overrides: Any) -> RouteTable:
    return RouteTable.from_dict(table_dict(**overrides))


def rejects(match: str, **overrides: Any) -> None:
    with pytest.raises(RouteError, match=match):
        make(**overrides)


# -- validation ------------------------------------------------------------------------------


def test_the_example_table_is_valid() -> None:
    table = make()
    assert table.generation == 5
    assert table.upstreams["v1"] == Upstream("v1", "http://127.0.0.1:41001", "1")
    assert table.mirror == Mirror("v3", 20)
    assert table.preview == "v2"
    assert table.routable


def test_route_error_is_a_value_error() -> None:
    assert issubclass(RouteError, ValueError)


def test_split_must_sum_to_100() -> None:
    rejects(r"split weights must sum to 100, not 95", split={"v1": 90, "v2": 5})
    rejects(r"sum to 100, not 110", split={"v1": 100, "v2": 10})


def test_empty_split_is_allowed_and_routes_nothing() -> None:
    table = make(split={}, mirror=None, preview=None)
    assert not table.routable
    assert table.select(random.Random(0)) is None
    assert table.by_hash("user-1") is None


def test_split_weights_are_non_negative_integers() -> None:
    rejects(r"split\.v2 must be an integer weight >= 0, not -10", split={"v1": 110, "v2": -10})
    rejects(r"split\.v1 must be an integer weight", split={"v1": 90.0, "v2": 10})
    rejects(r"split\.v1 must be an integer weight", split={"v1": True, "v2": 99})


def test_unknown_upstream_in_split() -> None:
    rejects(r"split: 'v9' is not a declared upstream", split={"v1": 90, "v9": 10})


def test_unknown_upstream_in_mirror() -> None:
    rejects(
        r"mirror\.upstream 'v9' is not a declared upstream", mirror={"upstream": "v9", "percent": 5}
    )


def test_unknown_upstream_in_preview() -> None:
    rejects(r"preview 'v9' is not a declared upstream", preview="v9")


@pytest.mark.parametrize("name", ["V1", "-v1", "v 1", "", "v/1", "ü"])
def test_bad_upstream_names(name: str) -> None:
    upstreams = {name: {"url": "http://127.0.0.1:1"}}
    with pytest.raises(RouteError, match=r"upstream name .* is invalid"):
        RouteTable.from_dict({"upstreams": upstreams})


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https://127.0.0.1:1", "must be an http:// URL"),
        ("127.0.0.1:1", "must be an http:// URL"),
        ("http://", "has no host"),
        ("http://127.0.0.1:1/v2", "no path, query or fragment"),
        ("http://127.0.0.1:1?x=1", "no path, query or fragment"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://u:p@127.0.0.1:1", "credentials"),
        ("", "non-empty string"),
        (5, "non-empty string"),
    ],
)
def test_bad_urls(url: Any, match: str) -> None:
    with pytest.raises(RouteError, match=rf"upstreams\.a\.url.*{match}|{match}"):
        RouteTable.from_dict({"upstreams": {"a": {"url": url}}})


def test_url_trailing_slash_is_normalised() -> None:
    table = RouteTable.from_dict({"upstreams": {"a": {"url": "http://localhost:8000/"}}})
    assert table.upstreams["a"].url == "http://localhost:8000"


@pytest.mark.parametrize("route_by", ["header", "hash"])
def test_key_is_required_for_header_and_hash(route_by: str) -> None:
    rejects(rf"key is required when route_by is '{route_by}'", route_by=route_by)


def test_key_must_be_a_header_name() -> None:
    rejects(r"key must be an HTTP header name", route_by="hash", key="x user")


def test_route_by_must_be_known() -> None:
    rejects(r"route_by must be one of weight, header, hash", route_by="random")


@pytest.mark.parametrize("percent", [-1, 101, "20", True, float("nan")])
def test_bad_mirror_percent(percent: Any) -> None:
    rejects(
        r"mirror\.percent must be a number from 0 to 100",
        mirror={"upstream": "v3", "percent": percent},
    )


def test_mirror_fields_are_required() -> None:
    rejects(r"mirror\.percent is required", mirror={"upstream": "v3"})
    rejects(r"mirror\.upstream is required", mirror={"percent": 3})
    rejects(r"mirror must be an object", mirror=[])


@pytest.mark.parametrize("generation", [-1, "5", 1.5, None, True])
def test_bad_generation(generation: Any) -> None:
    rejects(r"generation must be an integer >= 0", generation=generation)


def test_unknown_fields_are_rejected() -> None:
    rejects(r"unknown field\(s\) 'splits'", splits={})
    with pytest.raises(RouteError, match=r"upstreams\.a: unknown field\(s\) 'weight'"):
        RouteTable.from_dict({"upstreams": {"a": {"url": "http://h:1", "weight": 3}}})


def test_upstream_needs_a_url_and_a_string_version() -> None:
    with pytest.raises(RouteError, match=r"upstreams\.a\.url is required"):
        RouteTable.from_dict({"upstreams": {"a": {"version": "1"}}})
    with pytest.raises(RouteError, match=r"upstreams\.a\.version must be a non-empty string"):
        RouteTable.from_dict({"upstreams": {"a": {"url": "http://h:1", "version": ""}}})
    # An integer version (as YAML writes it) is taken as its string.
    table = RouteTable.from_dict({"upstreams": {"a": {"url": "http://h:1", "version": 3}}})
    assert table.upstreams["a"].version == "3"


def test_invalid_json_is_a_route_error() -> None:
    with pytest.raises(RouteError, match="not valid JSON"):
        RouteTable.from_json("{")
    with pytest.raises(RouteError, match="must be a JSON object"):
        RouteTable.from_json("[]")


def test_constructor_validates_too() -> None:
    with pytest.raises(RouteError, match="sum to 100"):
        RouteTable(upstreams={"a": Upstream("a", "http://h:1")}, split={"a": 50})


# -- JSON ------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    table = make(route_by="hash", key="X-User")
    again = RouteTable.from_json(table.to_json())
    assert again == table
    assert json.loads(table.to_json()) == table_dict(route_by="hash", key="X-User")
    assert RouteTable.from_json(table.to_json(indent=None).encode()) == table


def test_json_keeps_split_order() -> None:
    table = make(split={"v2": 10, "v1": 90})
    assert list(json.loads(table.to_json())["split"]) == ["v2", "v1"]


def test_empty_table() -> None:
    empty = RouteTable.empty()
    assert empty.generation == 0
    assert RouteTable.from_json(empty.to_json()) == empty
    assert RouteTable.from_json("{}") == empty
    assert json.loads(empty.to_json()) == {
        "generation": 0,
        "upstreams": {},
        "split": {},
        "route_by": "weight",
        "key": None,
        "mirror": None,
        "preview": None,
    }


def test_with_generation() -> None:
    table = make()
    assert table.with_generation(9).generation == 9
    assert table.with_generation(9).split == table.split


def test_table_is_not_affected_by_later_changes_to_its_input() -> None:
    split = {"v1": 90, "v2": 10}
    upstreams = {
        "v1": Upstream("v1", "http://h:1"),
        "v2": Upstream("v2", "http://h:2"),
    }
    table = RouteTable(upstreams=upstreams, split=split)
    split["v1"] = 0
    upstreams.clear()
    assert table.split == {"v1": 90, "v2": 10}
    assert set(table.upstreams) == {"v1", "v2"}


# -- selection -------------------------------------------------------------------------------


def test_weight_selection_follows_weights() -> None:
    table = make()
    rng = random.Random(1234)
    counts = Counter(table.select(rng).name for _ in range(10_000))  # type: ignore[union-attr]
    assert set(counts) == {"v1", "v2"}
    assert 8_800 <= counts["v1"] <= 9_200
    assert 800 <= counts["v2"] <= 1_200


def test_zero_weight_is_never_chosen() -> None:
    table = make(split={"v1": 0, "v2": 100})
    rng = random.Random(7)
    assert {table.select(rng).name for _ in range(2_000)} == {"v2"}  # type: ignore[union-attr]
    table = make(split={"v1": 100, "v2": 0})
    assert {table.select(rng).name for _ in range(2_000)} == {"v1"}  # type: ignore[union-attr]


def test_hash_is_sticky_and_spreads_by_weight() -> None:
    table = make(route_by="hash", key="X-User", split={"v1": 70, "v2": 30})
    rng = random.Random(0)
    first = {}
    for i in range(2_000):
        up = table.select(rng, key_value=f"user-{i}")
        assert up is not None
        first[i] = up.name
    for i in range(2_000):
        again = table.select(random.Random(i), key_value=f"user-{i}")
        assert again is not None and again.name == first[i]
    counts = Counter(first.values())
    assert 1_250 <= counts["v1"] <= 1_550
    assert 450 <= counts["v2"] <= 750


def test_hash_buckets_follow_split_order() -> None:
    table = make(route_by="hash", key="X-User", split={"v1": 50, "v2": 50})
    # Same weights listed the other way round swap which half goes where.
    flipped = make(route_by="hash", key="X-User", split={"v2": 50, "v1": 50})
    for i in range(200):
        a = table.by_hash(f"k{i}")
        b = flipped.by_hash(f"k{i}")
        assert a is not None and b is not None and a.name != b.name


def test_hash_without_the_header_falls_back_to_weight() -> None:
    table = make(route_by="hash", key="X-User", split={"v1": 0, "v2": 100})
    assert table.select(random.Random(3), key_value=None).name == "v2"  # type: ignore[union-attr]


def test_header_routing_and_fallback() -> None:
    table = make(route_by="header", key="X-Variant", split={"v1": 100, "v2": 0})
    rng = random.Random(5)
    assert table.select(rng, key_value="v2").name == "v2"  # type: ignore[union-attr]
    assert table.select(rng, key_value=" v3 ").name == "v3"  # type: ignore[union-attr]
    assert table.select(rng, key_value="nope").name == "v1"  # type: ignore[union-attr]
    assert table.select(rng, key_value=None).name == "v1"  # type: ignore[union-attr]


def test_preview_wins_over_routing() -> None:
    table = make(split={"v1": 100, "v2": 0}, preview="v3")
    rng = random.Random(5)
    assert table.select(rng, preview=True).name == "v3"  # type: ignore[union-attr]
    assert table.select(rng, preview=False).name == "v1"  # type: ignore[union-attr]
    no_preview = make(split={"v1": 100, "v2": 0}, preview=None)
    assert no_preview.select(rng, preview=True).name == "v1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("1", True),
        ("True", True),
        (" TRUE ", True),
        ("false", False),
        ("0", False),
        ("", False),
        (None, False),
        ("yes", False),
    ],
)
def test_is_preview(value: str | None, expected: bool) -> None:
    assert is_preview(value) is expected


def test_version_lookup() -> None:
    table = make()
    assert table.for_version("2").name == "v2"  # type: ignore[union-attr]
    assert table.for_version("3").name == "v3"  # type: ignore[union-attr]
    assert table.for_version("4") is None
    assert table.versions() == ["1", "2", "3"]


def test_version_lookup_prefers_an_upstream_with_weight() -> None:
    table = RouteTable.from_dict(
        {
            "upstreams": {
                "old": {"url": "http://h:1", "version": "2"},
                "new": {"url": "http://h:2", "version": "2"},
            },
            "split": {"old": 0, "new": 100},
        }
    )
    assert table.for_version("2").name == "new"  # type: ignore[union-attr]
    assert table.versions() == ["2"]
    assert table.alternative("new", random.Random(0), version="2").name == "old"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v2/models/m/versions/2/infer", "2"),
        ("/v2/models/m/versions/2", "2"),
        ("/v2/models/m/versions/2/ready", "2"),
        ("/v2/models/m/infer", None),
        ("/v2/models/m/versions/", None),
        ("/v2/models//versions/2/infer", None),
        ("/v2/health/ready", None),
        ("/v1/models/m/versions/2/infer", None),
    ],
)
def test_version_from_path(path: str, version: str | None) -> None:
    assert version_from_path(path) == version


def test_alternative_has_weight_and_differs() -> None:
    table = make(split={"v1": 60, "v2": 40})
    rng = random.Random(0)
    assert {table.alternative("v1", rng).name for _ in range(100)} == {"v2"}  # type: ignore[union-attr]
    assert {table.alternative("v3", rng).name for _ in range(500)} == {"v1", "v2"}  # type: ignore[union-attr]
    assert make(split={"v1": 100, "v2": 0}).alternative("v1", rng) is None
    assert make(split={}, mirror=None, preview=None).alternative("v1", rng) is None


def test_mirror_percent() -> None:
    table = make(mirror={"upstream": "v3", "percent": 20})
    rng = random.Random(99)
    hits = sum(table.mirror_target(rng) is not None for _ in range(10_000))
    assert 1_800 <= hits <= 2_200
    always = make(mirror={"upstream": "v3", "percent": 100})
    assert all(always.mirror_target(rng).name == "v3" for _ in range(100))  # type: ignore[union-attr]
    never = make(mirror={"upstream": "v3", "percent": 0})
    assert all(never.mirror_target(rng) is None for _ in range(100))
    assert make(mirror=None).mirror_target(rng) is None

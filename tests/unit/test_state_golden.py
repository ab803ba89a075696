"""Golden state files: the v1 format is pinned byte for byte, and v0 migrates to v1.

Regenerate with ``pytest --update-goldens`` after an intended format change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlform.errors import StateError
from mlform.state.codec import parse_state, render_state
from mlform.state.migrate import migrate_document
from mlform.state.model import STATE_FORMAT_VERSION, ObjectStatus
from mlform.state.store import LocalStateStore

GOLDEN = Path(__file__).parents[1] / "golden" / "state"


def _update(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens", default=False))


def test_v1_golden_round_trips_byte_identical() -> None:
    text = (GOLDEN / "v1_example.json").read_text(encoding="utf-8")
    doc = parse_state(text, source="golden")
    assert doc.serial == 7
    assert doc.objects["features.diagnosis"].status is ObjectStatus.FAILED
    assert render_state(doc) == text


def test_v1_golden_read_then_written_by_the_store_keeps_every_field(tmp_path: Path) -> None:
    text = (GOLDEN / "v1_example.json").read_text(encoding="utf-8")
    (tmp_path / "state.json").write_text(text, encoding="utf-8")
    store = LocalStateStore(tmp_path)
    doc = store.read()
    assert doc is not None
    written = store.write(doc, expected_serial=7)
    expected = text.replace('"serial": 7,', '"serial": 8,', 1)
    assert (tmp_path / "state.json").read_text(encoding="utf-8") == expected
    assert written.serial == 8


def test_v0_golden_migrates_to_the_pinned_v1_document(request: pytest.FixtureRequest) -> None:
    text = (GOLDEN / "v0_example.json").read_text(encoding="utf-8")
    migrated = render_state(parse_state(text, source="golden v0"))
    target = GOLDEN / "v0_example.migrated.json"
    if _update(request):
        target.write_text(migrated, encoding="utf-8")
    assert migrated == target.read_text(encoding="utf-8")
    doc = parse_state(migrated, source="migrated")
    assert doc.format_version == STATE_FORMAT_VERSION
    assert doc.objects["features.diagnosis"].kind == "features"
    assert doc.objects["features.diagnosis"].depends_on == ["data.patients"]


def test_migration_chain_runs_every_step_in_order() -> None:
    def step0(raw: dict[str, object]) -> dict[str, object]:
        return {**raw, "format_version": 1, "trail": ["0->1"]}

    def step1(raw: dict[str, object]) -> dict[str, object]:
        trail = list(raw["trail"])  # type: ignore[call-overload]
        return {**raw, "format_version": 2, "trail": [*trail, "1->2"]}

    out = migrate_document({"version": 0}, target=2, upgrades={0: step0, 1: step1})
    assert out["format_version"] == 2
    assert out["trail"] == ["0->1", "1->2"]


def test_a_newer_format_is_refused_with_upgrade_advice() -> None:
    with pytest.raises(StateError, match="upgrade mlform"):
        parse_state('{"format_version": 99, "lineage": "x"}', source="state file s.json")


def test_a_missing_upgrade_step_is_reported() -> None:
    with pytest.raises(StateError, match="no upgrade step from state format version 0"):
        migrate_document({"version": 0}, target=1, upgrades={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"lineage": "x"}', "no integer format_version"),
        ('{"format_version": 1, "lineage": "x", "objects": 3}', "not a valid state document"),
        ('{"format_version": 1, "lineage": "x", "bogus": 1}', "bogus"),
    ],
)
def test_damaged_documents_raise_state_error_naming_the_source(text: str, message: str) -> None:
    with pytest.raises(StateError, match=message) as info:
        parse_state(text, source="state file /x/state.json", recovery="restore a snapshot")
    assert "state file /x/state.json" in str(info.value)
    assert "restore a snapshot" in str(info.value)

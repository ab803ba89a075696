"""LocalStateStore: round trips, serial checks, atomic writes, history, import and export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlform.errors import StateConflictError, StateError
from mlform.state.codec import render_state
from mlform.state.model import HistoryEntry, ObjectStatus, RecordedObject, StateDocument
from mlform.state.store import LocalStateStore, StateWriter


def _obj(address: str, **fields: object) -> RecordedObject:
    return RecordedObject(address=address, kind=address.split(".")[0], **fields)  # type: ignore[arg-type]


def _doc(*objects: RecordedObject, lineage: str = "", serial: int = 0) -> StateDocument:
    return StateDocument(lineage=lineage, serial=serial, objects={o.address: o for o in objects})


def test_read_is_none_before_the_first_write(tmp_path: Path) -> None:
    assert LocalStateStore(tmp_path / ".mlform").read() is None


def test_first_write_creates_lineage_and_serial_one_then_round_trips(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / ".mlform")
    written = store.write(
        _doc(_obj("data.a", config={"path": "a.csv"}, outputs={"rows": 3})), expected_serial=None
    )
    assert written.serial == 1
    assert len(written.lineage) == 36
    assert store.read() == written
    second = store.write(written, expected_serial=1)
    assert (second.serial, second.lineage) == (2, written.lineage)
    assert store.read() == second


def test_a_write_against_a_moved_serial_is_refused(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    first = store.write(_doc(), expected_serial=None)
    store.write(first, expected_serial=1)
    with pytest.raises(StateConflictError, match="expected serial 1, found serial 2"):
        store.write(first, expected_serial=1)
    with pytest.raises(StateConflictError, match="expected no state, found serial 2"):
        store.write(first, expected_serial=None)
    assert store.read().serial == 2  # type: ignore[union-attr]


def test_a_write_of_another_lineage_is_refused(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    store.write(_doc(), expected_serial=None)
    with pytest.raises(StateConflictError, match="different states"):
        store.write(_doc(lineage="other"), expected_serial=1)


def test_a_corrupt_state_file_says_how_to_recover(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    store.write(_doc(), expected_serial=None)
    (tmp_path / "state.json").write_text('{"format_version": 1, "lin', encoding="utf-8")
    with pytest.raises(StateError) as info:
        store.read()
    message = str(info.value)
    assert "not valid JSON" in message
    assert "mlform state import" in message
    assert "00000001.json" in message
    with pytest.raises(StateError, match="damaged"):
        store.write(_doc(), expected_serial=1)


def test_every_write_keeps_a_snapshot_and_history_lists_operations(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    doc = store.write(_doc(_obj("data.a")), expected_serial=None)
    doc = store.write(
        _doc(_obj("data.a"), _obj("data.b"), lineage=doc.lineage, serial=1), expected_serial=1
    )
    assert store.serials() == [1, 2]
    assert set(store.snapshot(1).objects) == {"data.a"}
    assert set(store.snapshot(2).objects) == {"data.a", "data.b"}
    with pytest.raises(
        StateError, match=r"no state snapshot for serial 9 \(recorded serials: 1-2\)"
    ):
        store.snapshot(9)
    entry = HistoryEntry(
        operation="apply",
        started_serial=0,
        finished_serial=2,
        started_at="2024-01-01T00:00:00Z",
        finished_at="2024-01-01T00:00:01Z",
    )
    store.append_history(entry)
    store.append_history(entry.model_copy(update={"outcome": "failed"}))
    assert [e.outcome for e in store.history()] == ["succeeded", "failed"]


def test_a_torn_last_history_line_is_ignored(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    entry = HistoryEntry(
        operation="apply", started_serial=0, finished_serial=1, started_at="t0", finished_at="t1"
    )
    store.append_history(entry)
    with (tmp_path / "history.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"operation": "app')
    assert store.history() == [entry]


def test_export_then_import_into_a_fresh_directory_keeps_lineage(tmp_path: Path) -> None:
    source = LocalStateStore(tmp_path / "a")
    with pytest.raises(StateError, match="nothing applied yet"):
        source.export_state()
    doc = source.write(_doc(_obj("model.m", outputs={"v": 1})), expected_serial=None)
    text = source.export_state()
    assert json.loads(text)["lineage"] == doc.lineage
    target = LocalStateStore(tmp_path / "b")
    imported = target.import_state(text)
    assert imported.lineage == doc.lineage
    assert imported.serial == 2  # bumped past the imported serial
    assert imported.objects == doc.objects
    assert [e.operation for e in target.history()] == ["import"]
    assert target.current_lock() is None


def test_import_refuses_another_lineage_unless_forced(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    store.write(_doc(), expected_serial=None)
    store.write(store.read(), expected_serial=1)  # type: ignore[arg-type]
    foreign = render_state(_doc(_obj("data.x"), lineage="foreign-lineage", serial=1))
    with pytest.raises(StateError, match=r"different state\. Pass --force"):
        store.import_state(foreign)
    imported = store.import_state(foreign, force=True)
    assert (imported.lineage, imported.serial) == ("foreign-lineage", 3)
    assert set(store.read().objects) == {"data.x"}  # type: ignore[union-attr]
    with pytest.raises(StateError, match="not valid JSON"):
        store.import_state("nope")


def test_writer_commits_each_change_as_a_new_serial_from_many_threads(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    writer = StateWriter(store, None)
    writer.stamp(project="p", stack="dev", mlform_version="0.1.0")

    def work(i: int) -> None:
        writer.mark_pending(f"data.d{i}", "data")
        writer.record(_obj(f"data.d{i}", config={"i": i}, outputs={"i": i}))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = store.read()
    assert doc is not None and doc == writer.document
    assert doc.serial == 16 and doc.project == "p" and doc.stack == "dev"
    assert all(o.status is ObjectStatus.APPLIED for o in doc.objects.values())
    assert sorted(o.updated_serial for o in doc.objects.values())[-1] == 16
    assert store.serials() == list(range(1, 17))


def test_writer_pending_and_failed_keep_previous_config_and_outputs(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    writer = StateWriter(store, None)
    writer.record(_obj("data.a", config={"v": 1}, outputs={"rows": 5}))
    writer.mark_pending("data.a", "data")
    pending = store.read().get("data.a")  # type: ignore[union-attr]
    assert pending is not None and pending.status is ObjectStatus.PENDING
    assert (pending.config, pending.outputs) == ({"v": 1}, {"rows": 5})
    writer.mark_failed("data.a", "data", "boom")
    failed = store.read().get("data.a")  # type: ignore[union-attr]
    assert failed is not None and failed.status is ObjectStatus.FAILED
    assert (failed.error, failed.outputs, failed.updated_serial) == ("boom", {"rows": 5}, 3)
    writer.remove("data.a")
    assert store.read().objects == {}  # type: ignore[union-attr]


def test_writer_notices_a_concurrent_writer(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    writer = StateWriter(store, None)
    doc = writer.record(_obj("data.a"))
    store.write(doc, expected_serial=doc.serial)  # someone else
    with pytest.raises(StateConflictError):
        writer.record(_obj("data.b"))


_WRITER_LOOP = """
import sys
from pathlib import Path
from mlform.state.model import RecordedObject, StateDocument
from mlform.state.store import LocalStateStore
store = LocalStateStore(Path(sys.argv[1]))
doc = store.read() or StateDocument(lineage="")
expected = doc.serial if doc.lineage else None
payload = {"blob": "x" * 20000}
i = 0
while True:
    i += 1
    objects = {f"data.d{j}": RecordedObject(address=f"data.d{j}", kind="data", config=payload,
               outputs={"i": i}) for j in range(i % 7 + 1)}
    doc = store.write(doc.model_copy(update={"objects": objects}), expected_serial=expected)
    expected = doc.serial
"""


def test_a_writer_killed_mid_write_never_leaves_a_partial_state_file(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state")
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER_LOOP, str(store.root)])
        deadline = time.monotonic() + 20
        seen = store.read()
        start = 0 if seen is None else seen.serial
        while time.monotonic() < deadline:
            doc = store.read()  # concurrent reads always parse
            if doc is not None and doc.serial >= start + 5 + round_ * 3:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        doc = store.read()
        assert doc is not None and doc.serial > start
        assert all(o.config["blob"] == "x" * 20000 for o in doc.objects.values())
        assert store.snapshot(doc.serial) == doc
        leftovers = [p for p in store.root.glob(".state.json.*.tmp")]
        for leftover in leftovers:  # a killed writer may leave its temp file, never the state
            leftover.unlink()

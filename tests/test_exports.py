"""The store behind the export route: one download per export, its owner's only, and nothing left behind."""

from __future__ import annotations

import time

from ui.exports import ExportStore


def write(text: str):
    return lambda path: path.write_text(text)


def test_an_export_is_taken_once_and_only_by_its_owner(tmp_path):
    store = ExportStore(tmp_path / "exports")
    token = store.add(7, "diary.zip", write("zip bytes"))
    assert store.take(token, 8) is None and store.take(token, None) is None  # someone else: not used up
    path, name = store.take(token, 7)
    assert name == "diary.zip" and path.read_text() == "zip bytes" and token not in str(name)
    assert store.take(token, 7) is None
    store.discard(path)
    assert list((tmp_path / "exports").iterdir()) == []
    assert store.take("../../etc/passwd", 7) is None


def test_exports_never_downloaded_are_swept_after_their_time(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "left-by-a-broken-download").mkdir()
    now = [time.time()]
    store = ExportStore(folder, ttl_s=3600, clock=lambda: now[0])
    early = store.add(None, "early.zip", write("early"))
    now[0] += 3000
    late = store.add(None, "late.zip", write("late"))
    now[0] += 1000  # the first export and the leftover past their hour, the second export not yet
    assert store.sweep() == 2
    assert sorted(p.name for p in folder.iterdir()) == [late]
    assert store.take(early, None) is None and not (folder / early).exists()
    assert store.take(late, None) is not None


def test_starting_empties_what_an_earlier_run_left(tmp_path):
    folder = tmp_path / "exports"
    ExportStore(folder).add(None, "a.zip", write("a"))
    store = ExportStore(folder).start()
    try:
        assert not folder.exists() or list(folder.iterdir()) == []
    finally:
        store.stop()


def test_a_failed_write_leaves_nothing(tmp_path):
    store = ExportStore(tmp_path / "exports")

    def fail(path):
        path.write_text("half")
        raise OSError("disk full")

    try:
        store.add(None, "x.zip", fail)
    except OSError:
        pass
    else:
        raise AssertionError("the write's error should reach the caller")
    assert list((tmp_path / "exports").iterdir()) == []

"""Several app instances on one data directory and database (SQLite here; tests/test_postgres_apps.py has them on
PostgreSQL): an instance that starts leaves alone what a live one is doing (its pages' uploads, the answer it is
writing) and cleans up only what its own earlier run, or an instance that is gone, left behind."""

from __future__ import annotations

import json
from pathlib import Path

from domain.types import Status
from storage.blobs import BlobStore
from storage.database import open_database, sqlite_url
from storage.instances import INTERRUPTED, instance_name
from storage.repository import ConversationRepository
from tests.helpers import AppProcess, upload


def started(log: Path, data_dir: Path, model: Path, port: int | None = None) -> AppProcess:
    app = AppProcess(["--model", str(model), "--data-dir", str(data_dir)], log, port=port)
    app.wait_for_page()
    return app


def test_a_starting_instance_keeps_a_live_instances_uploads_and_answers_and_marks_the_gone_ones(demo_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    # What a run killed mid-upload and mid-import left in the blob store long ago, and what one may be writing now.
    import os
    import time

    from storage.orphans import GRACE_S

    files = data_dir / "files" / "ab"
    files.mkdir(parents=True)
    killed_upload, killed_import, in_flight = files / ("ab" + "1" * 62 + ".png"), files / ".incoming-x1", files / ".incoming-x2"
    for path in (killed_upload, killed_import, in_flight):
        path.write_bytes(b"\0" * 1000)
    for path in (killed_upload, killed_import):
        os.utime(path, (time.time() - GRACE_S - 1, time.time() - GRACE_S - 1))
    first = started(tmp_path / "first.log", data_dir, demo_model_dir)
    assert not killed_upload.exists() and not killed_import.exists() and in_flight.exists()
    assert "removed 2 stored file(s)" in first.output()
    second = None
    try:
        status, body = upload(first, "pending.wav", 1000)  # sent by a page of the first, not yet in a message
        assert status == 200
        pending = Path(json.loads(body)[0])
        assert pending.is_file() and pending.is_relative_to(data_dir / "uploads")

        # Answers in progress: one the first instance is writing, one an instance that is gone left behind.
        database, blobs = open_database(sqlite_url(data_dir / "conversations.sqlite3")), BlobStore(data_dir / "files")

        def writer(name):
            return ConversationRepository(database, blobs, writer=name)

        conversation = writer(instance_name(first.port)).create_conversation("shared")
        live = writer(instance_name(first.port)).start_assistant_message(conversation.id)
        writer(instance_name(first.port)).update_message_text(live.id, "so far")
        orphan = writer("gone-host:7860").start_assistant_message(conversation.id, parent_id=None)

        second = started(tmp_path / "second.log", data_dir, demo_model_dir)
        # Whoever looks first marks the gone instance's answer: the second as it starts, or the first's next heartbeat
        # (every 10 s) when the second is slow to start.
        said = second.output() + first.output()
        assert "kept 1 answer(s) that an earlier run left unfinished" in said or "a stopped app instance left" in said
        repository = writer(None)
        assert repository.get_message(live.id).status is Status.STREAMING  # the first is still writing it
        assert (repository.get_message(orphan.id).status, repository.get_message(orphan.id).error) == (Status.ERROR, INTERRUPTED)
        assert pending.is_file()  # the first's page can still send it
        status, body = upload(second, "other.wav", 1000)
        kept = Path(json.loads(body)[0])

        # The first crashes and comes back on its port: what its earlier run left is marked and deleted at once;
        # the second's upload stays.
        first.kill()
        first = started(tmp_path / "first-again.log", data_dir, demo_model_dir, port=first.port)
        message = repository.get_message(live.id)
        assert (message.text, message.status, message.error) == ("so far", Status.ERROR, INTERRUPTED)
        assert not pending.exists() and kept.is_file()
    finally:
        first.kill()
        if second is not None:
            second.kill()

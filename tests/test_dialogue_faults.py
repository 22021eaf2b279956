"""The dialogue manager when things go wrong: bad input, a failed load, a bug, damaged files, faults of the machine."""

from __future__ import annotations

import threading
import time

import pytest

import assistant.answering as answering_module
from assistant.dialogue import DialogueManager, ReplyDelta, ReplyFinished, UserTurnSaved
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.turn_queue import TurnQueue
from domain import limits
from domain.errors import InvalidInput, ModelLoadError
from domain.types import MediaKind, Role, Status
from tests.engine_helpers import FailingEngine, RecordingEngine, ready_host
from tests.helpers import run, settled_answer


def test_model_that_failed_to_load_gives_an_error_answer_and_keeps_the_message(repository):
    def failing_load(progress):
        raise ModelLoadError("Could not load the model “x”. Start with --demo …")

    manager = DialogueManager(repository, ModelHost(failing_load).start(), MediaLoader(), TurnQueue())
    events = run(manager, None, "hello?")
    final = events[-1].message
    assert final.status is Status.ERROR and "--demo" in final.error
    user, _ = repository.get_messages(final.conversation_id)
    assert user.text == "hello?"


def test_bad_input_saves_nothing(engine, repository, tmp_path):
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"nope")
    with pytest.raises(InvalidInput, match="fake.png"):
        run(manager, None, "look", [(fake, "fake.png")])
    assert repository.list_conversations() == []


def test_bad_input_in_an_existing_conversation_loses_nothing(engine, repository, tmp_path):
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    conversation_id = run(manager, None, "first")[0].conversation.id
    before = repository.get_messages(conversation_id)
    with pytest.raises(InvalidInput):
        run(manager, conversation_id, "x" * 1_000_000)
    assert repository.get_messages(conversation_id) == before


# --- hardening: a bad file, an unexpected failure -----------------------------------------------------------


def test_an_unexpected_exception_ends_the_turn_as_a_saved_error(engine, repository, caplog):
    manager = DialogueManager(repository, ready_host(FailingEngine(engine)), MediaLoader(), TurnQueue())
    events = run(manager, None, "Hello")  # must not raise
    final = events[-1]
    assert isinstance(final, ReplyFinished) and final.message.status is Status.ERROR
    # A sentence that says what happened and what to do; the exception's type and text only in the log.
    assert final.message.error == answering_module.ANSWER_FAILED
    assert "RuntimeError" not in str(final.message.error) and "planted bug" not in str(final.message.error)
    assert "planted bug" in caplog.text and "RuntimeError" in caplog.text
    assert isinstance(final.failure, RuntimeError)
    assert repository.get_messages(final.message.conversation_id)[-1] == final.message
    assert len(manager.queue) == 0  # and the model is free again


def test_an_unreadable_earlier_file_becomes_a_note_and_the_answer_still_comes(engine, repository, png_file, speech_wav):
    recording = RecordingEngine(engine)
    manager = DialogueManager(repository, ready_host(recording), MediaLoader(), TurnQueue())
    first = run(manager, None, "look and listen", [(png_file, "car.png"), (speech_wav, "q.wav")])
    conversation_id = first[0].conversation.id
    image, audio = first[0].message.attachments
    image.path.write_bytes(image.path.read_bytes()[:60])  # corrupted on disk: the header survives, the pixels do not
    audio.path.unlink()  # deleted

    # After a restart (nothing decoded in memory any more):
    manager = DialogueManager(repository, manager.host, MediaLoader(), TurnQueue())
    final = run(manager, conversation_id, "and now?")[-1]
    assert final.message.status is Status.COMPLETE and final.message.text
    prompt = engine.processor.tokenizer.decode(recording.prepared[-1]["input_ids"][0])
    assert "The image “car.png” attached here can no longer be read" in prompt
    assert "The audio “q.wav” attached here can no longer be read" in prompt
    assert "<|vision_bos|>" not in prompt and "<|audio_bos|>" not in prompt


def test_an_image_saved_before_the_shape_check_no_longer_breaks_its_conversation(engine, repository, tmp_path):
    from domain.types import MediaFile
    from tests.media_factory import png

    # What the old validation let through: the processor refuses a 402×2 image on every later turn.
    line = png(tmp_path / "line.png", (402, 2))
    conversation = repository.create_conversation("old")
    repository.add_user_message(conversation.id, "a line", [MediaFile(line, "line.png", MediaKind.IMAGE, "image/png")])
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    final = run(manager, conversation.id, "text only")[-1]
    assert final.message.status is Status.COMPLETE and final.message.text


def test_a_failure_while_storing_files_leaves_no_conversation_and_no_files(engine, repository, tmp_path, monkeypatch):
    from storage.blobs import BlobStore
    from tests.media_factory import png

    first, second = png(tmp_path / "a.png"), png(tmp_path / "b.png", color=(0, 0, 255))
    real_put = BlobStore.put
    calls = []

    def put_then_fail(self, source, mime):
        calls.append(source)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_put(self, source, mime)

    monkeypatch.setattr(BlobStore, "put", put_then_fail)
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    with pytest.raises(OSError, match="No space left"):
        run(manager, None, "two pictures", [(first, "a.png"), (second, "b.png")])
    assert len(calls) == 2
    assert repository.list_conversations() == []
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


def test_lone_surrogate_saves_nothing(engine, repository):
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    with pytest.raises(InvalidInput, match="not valid text"):
        run(manager, None, "hi \ud83d")
    assert repository.list_conversations() == []


# --- faults of the machine mid-answer, and answers that always end --------------------------------------------


@pytest.fixture
def impatient_repository(tmp_path, monkeypatch):
    """The `repository` fixture's database, on connections that wait only a second for another writer's lock."""
    import storage.database
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    monkeypatch.setattr(storage.database, "BUSY_TIMEOUT_S", 1.0, raising=False)
    return ConversationRepository(open_database(sqlite_url(tmp_path / "db.sqlite3")), BlobStore(tmp_path / "files"))


def test_a_database_locked_mid_answer_loses_none_of_it(engine, impatient_repository, tmp_path, monkeypatch):
    """Another program holds SQLite's lock (BEGIN EXCLUSIVE) longer than the busy timeout while an answer streams:
    the reader gets the whole answer without waiting for the lock, and it is stored once the lock is let go."""
    import sqlite3

    monkeypatch.setattr(limits, "SAVE_INTERVAL_S", 0.0)
    repository = impatient_repository
    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=80)), MediaLoader(), TurnQueue())
    other_program = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    events = manager.send(None, "Tell me a long story", [], threading.Event())
    conversation_id = next(events).conversation.id
    deltas = []
    try:
        for event in events:
            if isinstance(event, ReplyDelta):
                if not deltas:
                    other_program.execute("BEGIN EXCLUSIVE")  # from the first piece on, nothing can be written
                deltas.append((time.monotonic(), event.text))
            finished = event
        finished_at = time.monotonic()
        held = repository.get_messages(conversation_id)[-1]  # reads still work under the lock (WAL)
    finally:
        other_program.execute("ROLLBACK")
    assert isinstance(finished, ReplyFinished)
    assert finished.message.status is Status.COMPLETE and finished.message.text == deltas[-1][1] and len(deltas) > 10
    assert finished_at - deltas[-1][0] < 1.0 + 0.5  # at most one busy timeout, not a wait for each failed write
    assert held.status is Status.STREAMING and deltas[-1][1].startswith(held.text) and held.text != deltas[-1][1]
    stored = settled_answer(repository, conversation_id)  # a write that failed is retried in the background
    assert (stored.status, stored.text, stored.details) == (Status.COMPLETE, finished.message.text, finished.message.details)


def test_a_full_disk_mid_answer_loses_none_of_it(engine, repository, monkeypatch):
    """SQLite's own error for a full disk ("database or disk is full", as a tmpfs gives it), raised at the driver for
    every write of the answer from its first piece on: the reader gets all of it; it is stored once space is free."""
    import sqlite3

    from sqlalchemy import event as sa_event

    monkeypatch.setattr(limits, "SAVE_INTERVAL_S", 0.0)
    full = threading.Event()

    def disk(conn, cursor, statement, parameters, context, executemany):
        if full.is_set() and statement.lstrip().upper().startswith(("UPDATE", "INSERT")):
            raise sqlite3.OperationalError("database or disk is full")

    sa_event.listen(repository._database.engine, "before_cursor_execute", disk)
    manager = DialogueManager(repository, ready_host(RecordingEngine(engine, max_new_tokens=80)), MediaLoader(), TurnQueue())
    events = manager.send(None, "Tell me a long story", [], threading.Event())
    conversation_id = next(events).conversation.id
    deltas = []
    for event in events:
        if isinstance(event, ReplyDelta):
            full.set()
            deltas.append(event.text)
        finished = event
    assert isinstance(finished, ReplyFinished) and finished.message.status is Status.COMPLETE
    assert finished.message.text == deltas[-1] and len(deltas) > 10
    assert repository.get_messages(conversation_id)[-1].status is Status.STREAMING  # not stored yet: no space
    full.clear()  # space was freed
    stored = settled_answer(repository, conversation_id)
    assert (stored.status, stored.text) == (Status.COMPLETE, finished.message.text)


def test_a_reader_that_leaves_at_any_step_leaves_a_finished_answer(engine, repository, png_file):
    """Closing the events right after the question is saved (a page that went away, an API client that hung up)
    still leaves the question with an answer, stopped, for send, regenerate and edit alike."""
    manager = DialogueManager(repository, ready_host(engine), MediaLoader(), TurnQueue())
    events = manager.send(None, "Hello", [(png_file, "car.png")], threading.Event())
    saved = next(events)
    assert isinstance(saved, UserTurnSaved)
    events.close()
    conversation_id = saved.conversation.id
    path = repository.get_messages(conversation_id)
    assert [(m.role, m.status) for m in path] == [(Role.USER, Status.COMPLETE), (Role.ASSISTANT, Status.STOPPED)]

    for events in (manager.regenerate(conversation_id, threading.Event()), manager.edit(path[0].id, "Hi", threading.Event())):
        question = next(events).message
        events.close()
        path = repository.get_messages(conversation_id)
        assert path[-2].id == question.id and (path[-1].role, path[-1].status) == (Role.ASSISTANT, Status.STOPPED)


def test_a_kill_right_after_the_question_is_saved_leaves_an_answer_marked_interrupted(tmp_path):
    """The process dies (SIGKILL) the moment the question is reported saved, before a model is even loaded: the next
    start's marking finds an answer to mark, so the question is never left without one."""
    import subprocess
    import sys

    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.instances import INTERRUPTED, Instances
    from storage.repository import ConversationRepository
    from tests.helpers import ROOT

    script = f"""
import os, signal, sys, threading
sys.path.insert(0, {str(ROOT)!r})
from assistant.dialogue import DialogueManager
from assistant.media import MediaLoader
from assistant.model_host import ModelHost
from assistant.turn_queue import TurnQueue
from storage.blobs import BlobStore
from storage.database import open_database, sqlite_url
from storage.repository import ConversationRepository

repository = ConversationRepository(open_database(sqlite_url({str(tmp_path / 'db.sqlite3')!r})), BlobStore({str(tmp_path / 'files')!r}))
host = ModelHost(lambda progress: threading.Event().wait()).start()  # a model that is still loading
events = DialogueManager(repository, host, MediaLoader(), TurnQueue()).send(None, "Anyone there?", [], threading.Event())
next(events)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    database = open_database(sqlite_url(tmp_path / "db.sqlite3"))
    Instances(database, "restarted:7860").mark_interrupted(startup=True)  # what run.py does at start
    repository = ConversationRepository(database, BlobStore(tmp_path / "files"))
    [conversation] = repository.list_conversations()
    question, answer = repository.get_messages(conversation.id)
    assert question.text == "Anyone there?"
    assert (answer.role, answer.status, answer.error) == (Role.ASSISTANT, Status.ERROR, INTERRUPTED)


def test_the_final_event_carries_why_an_answer_failed(engine, repository):
    from domain.errors import EngineUnavailable

    class ServerDown(RecordingEngine):
        def prepare(self, model_input):
            raise EngineUnavailable("The generation server at http://gpu-box:8000 did not answer. Check that it runs.")

    manager = DialogueManager(repository, ready_host(ServerDown(engine)), MediaLoader(), TurnQueue())
    final = run(manager, None, "Hello")[-1]
    assert isinstance(final.failure, EngineUnavailable)
    assert final.message.status is Status.ERROR and final.message.error.startswith("The generation server")
